"""Matching, grouping and ranking for everyone: 10,000 subscribers × 5 topics against 2,000 papers.

    python bench/matching.py [--subscribers 10000] [--papers 2000] [--naive-sample 100]

Targets: under 2 s for everyone on a 2-core machine, memory flat in the number of subscribers;
under 3 s with a description on every topic and a model learned from ratings on one in ten
(issue 14), beside the keyword-only figure of the same run. Each figure is the median of
--runs runs. Prints, in the same run, the same work done naively (every keyword of every
topic searched in every paper), measured on a sample of subscribers and extrapolated linearly.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.config import ArxivSource, Defaults, HuggingFaceSource, Subscriber, Topic  # noqa: E402  # noqa: E402
from digest.gather.adapters import arxiv, feed, huggingface  # noqa: E402,F401
from digest.match.learned import KEPT_WORDS, Learned  # noqa: E402
from digest.match.matcher import Matcher  # noqa: E402
from digest.match.normalise import words  # noqa: E402
from digest.match.relevance import terms  # noqa: E402
from digest.models import Paper  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples"  # real titles, made-up ids
NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)

VOCABULARY = [
    "KV cache", "speculative decoding", "quantization", "pruning", "distillation", "mixture of experts",
    "sparse attention", "linear attention", "state space model", "long context", "retrieval augmented generation",
    "RAG", "LoRA", "low-rank adaptation", "parameter-efficient", "instruction tuning", "preference optimization",
    "DPO", "RLHF", "reward model", "reinforcement learning", "chain of thought", "reasoning", "test-time scaling",
    "scaling law", "data selection", "data curation", "synthetic data", "pretraining", "tokenizer",
    "multilingual", "machine translation", "speech recognition", "text-to-speech", "vision-language model",
    "diffusion model", "image generation", "video generation", "3D reconstruction", "Gaussian splatting",
    "segmentation", "object detection", "robot manipulation", "embodied agent", "LLM agent", "tool use",
    "web agent", "code generation", "program synthesis", "theorem proving", "mathematical reasoning",
    "benchmark", "evaluation", "hallucination", "interpretability", "sparse autoencoder", "mechanistic",
    "alignment", "safety", "jailbreak", "red teaming", "watermark", "privacy", "federated learning",
    "graph neural network", "recommendation", "time series", "protein", "molecule", "weather",
    "continual learning", "catastrophic forgetting", "in-context learning", "prompt", "embedding",
    "contrastive learning", "self-supervised", "knowledge distillation", "model merging", "optimizer",
    "learning rate", "normalization", "transformer", "attention", "memory", "compression", "efficient inference",
    "serving", "GPU kernel", "FlashAttention", "uncertainty", "calibration", "causal", "fairness", "bias",
    "summarization", "question answering", "dialogue", "world model", "planning", "search", "retrieval",
]
EXCLUDES = ["survey", "benchmark", "position paper", "dataset", "medical", "theoretical"]
CATEGORIES = ["cs.CL", "cs.LG", "cs.CV", "cs.AI", "cs.RO", "stat.ML", "cs.*"]


def load_papers(count: int) -> list[Paper]:
    base = list(arxiv.parse(ArxivSource(name="listing", type="arxiv", categories=["cs.LG"]),
                            (SAMPLES / "arxiv-listing.rss.xml").read_bytes(), NOW).papers)
    votes = {p.id: p.upvotes for p in huggingface.parse(HuggingFaceSource(name="hf", type="huggingface"),
                                                        (SAMPLES / "hf-daily-papers.json").read_bytes(), NOW).papers}
    rng = random.Random(7)
    papers = []
    for n in range(count):
        p = base[n % len(base)]
        papers.append(Paper(
            id=f"2611.{20000 + n:05d}", title=p.title, url=p.url, authors=p.authors, abstract=p.abstract,
            categories=p.categories, upvotes=votes.get(p.id), sources=("listing",),
            first_seen_at=NOW - timedelta(hours=rng.uniform(0, 20)),
        ))
    return papers


def make_subscribers(count: int, topics_each: int = 5, pool: int = 0, described: bool = False,
                     papers: Sequence[Paper] = ()) -> list[Subscriber]:
    """Random topics each (every topic unique: the worst case), or with `pool`, topics drawn
    from that many distinct ones (presets and common choices, as on a list with a
    subscription centre). Described: every topic has a description, and one in ten a model
    learned from ratings (of the words of `papers`)."""
    rng = random.Random(42)
    vocabulary = sorted({w for p in papers for w in terms(p.title) + terms(p.abstract)})
    shared = [make_topic(rng, t, described, vocabulary) for t in range(pool)]
    subscribers = []
    for n in range(count):
        topics = (rng.sample(shared, topics_each) if shared
                  else [make_topic(rng, t, described, vocabulary) for t in range(topics_each)])
        subscribers.append(Subscriber(email=f"user{n}@example.org", topics=topics,
                                      trending=rng.choice([0, 0, 3, 5])))
    return subscribers


def make_topic(rng: random.Random, t: int, described: bool = False, vocabulary: Sequence[str] = ()) -> Topic:
    kind = rng.random()
    spec: dict = {"name": f"Topic {t + 1}"}
    if described:  # a sentence of the vocabulary's words, as a sign-up form asks for
        spec["description"] = "Papers about " + ", ".join(rng.sample(VOCABULARY, 4)) + " and related work."
        if vocabulary and rng.random() < 0.1:
            spec["learned"] = learned_model(rng, vocabulary)
    if kind < 0.75:
        spec["keywords"] = rng.sample(VOCABULARY, rng.randint(1, 4))
        if rng.random() < 0.3:
            spec["exclude"] = [rng.choice(EXCLUDES)]
        if rng.random() < 0.15:
            spec["categories"] = [rng.choice(CATEGORIES)]
    elif kind < 0.92:
        a, b, c = rng.sample(VOCABULARY, 3)
        spec["query"] = f'"{a}" OR ("{b}" AND NOT "{c}")'
    else:
        spec["categories"] = [rng.choice(CATEGORIES)]
        spec["min_upvotes"] = rng.choice([1, 3, 10])
    return Topic(**spec)


def learned_model(rng: random.Random, vocabulary: Sequence[str]) -> Learned:
    """A model as a reader's ratings leave one (learned.py): as many words as it keeps, each
    weighed; matching costs the same whatever the ratings were."""
    words = rng.sample(vocabulary, min(KEPT_WORDS, len(vocabulary)))
    return Learned(tuple(words), tuple(round(rng.gauss(0, 1.5), 5) for _ in words), -1.0, rng.randint(3, 60),
                   ("A paper the reader liked",))


def vectors_kept(subscribers: Sequence[Subscriber], papers: Sequence[Paper], sample: int = 300) -> str:
    """The sentence vectors of every distinct topic text and keyword as kept after their first
    encoding (semantic.py keeps each once, in memory and on disk), so the runs time matching,
    not encoding. The papers' are encoded for real (their texts are the samples'); the topics'
    encoding is timed on a sample and the rest stand in as random unit vectors: matching costs
    the same whatever their values. Returns the line that says what encoding would cost."""
    from digest.match import semantic

    if not semantic.available():
        return "sentence encoder not available: described topics scored by their words alone"
    clock = time.perf_counter()
    distinct = list(dict.fromkeys((p.title, p.abstract) for p in papers))
    semantic.vectors([semantic.paper_text(t, a) for t, a in distinct])
    paper_seconds = time.perf_counter() - clock
    texts = list(dict.fromkeys(text for s in subscribers for t in s.topics if t.description is not None
                               for text in [semantic.topic_text(t.name, t.description, t.keywords),
                                            *(semantic.keyword_text(t.name, k) for k in t.keywords)]))
    clock = time.perf_counter()
    semantic.vectors(texts[:sample])
    per_text = (time.perf_counter() - clock) / min(sample, len(texts))
    rng = np.random.default_rng(3)
    for text in texts[sample:]:
        vector = rng.standard_normal(semantic.DIMENSIONS).astype(np.float32)
        semantic._memory[semantic.text_key(text)] = (vector / np.linalg.norm(vector)).astype(np.float16)
    return (f"sentence vectors: {len(distinct):,} distinct papers encoded in {paper_seconds:.1f} s; topic texts "
            f"and keywords {per_text * 1000:.1f} ms each ({len(texts):,} distinct: ~{per_text * len(texts):,.0f} s "
            f"once, when first seen; kept before the runs)")


def run_indexed(subscribers, papers, defaults):
    matcher = Matcher(subscribers, defaults, papers)
    total = 0
    for digest in matcher.digests(subscribers, NOW):
        total += len(digest.papers)
    return total


# ---------------------------------------------------------------- the naive approach


def naive_digest_sizes(subscribers, papers, defaults):
    """Every keyword of every topic searched in every paper (words pre-normalised: generous to naive)."""
    prepared = [(words(p.title), words(p.abstract)) for p in papers]
    total = 0
    for subscriber in subscribers:
        matched = set()
        for topic in subscriber.topics:
            phrases = [tuple(words(k)) for k in topic.keywords]
            for i, (title, abstract) in enumerate(prepared):
                if any(_contains(title, ph) or _contains(abstract, ph) for ph in phrases):
                    matched.add(i)
        total += min(len(matched), subscriber.max_papers or defaults.max_papers)
    return total


def _contains(sequence, phrase):
    n = len(phrase)
    if not n:
        return False
    first = phrase[0]
    for i, word in enumerate(sequence):
        if word == first and tuple(sequence[i:i + n]) == phrase:
            return True
    return False


def terms_cache_clear() -> None:
    from digest.match import relevance

    relevance._query_terms.cache_clear()
    relevance._terms.cache_clear()
    relevance._term.cache_clear()


def timed(fn, *args):
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def peak_memory(fn, *args):
    gc.collect()
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=2_000)
    parser.add_argument("--naive-sample", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure; the median is printed")
    parser.add_argument("--topic-pool", type=int, default=0,
                        help="topics drawn from this many distinct ones (0: every topic unique)")
    args = parser.parse_args()

    papers = load_papers(args.papers)
    subscribers = make_subscribers(args.subscribers, pool=args.topic_pool)
    defaults = Defaults()
    print(f"workload: {len(subscribers):,} subscribers x 5 topics "
          f"({f'from {args.topic_pool:,} distinct' if args.topic_pool else 'each unique'}), "
          f"{len(papers):,} papers (from the seeds)")

    described = make_subscribers(args.subscribers, pool=args.topic_pool, described=True, papers=papers)
    encoding = vectors_kept(described, papers)
    runs: dict[str, list[float]] = {"keywords": [], "described": []}
    for _ in range(args.runs):  # alternated: a busy moment of the machine weighs on both
        seconds, total = timed(run_indexed, subscribers, papers, defaults)
        runs["keywords"].append(seconds)
        terms_cache_clear()  # every run cold: the descriptions' words read again
        described_seconds, described_total = timed(run_indexed, described, papers, defaults)
        runs["described"].append(described_seconds)
    seconds, described_seconds = statistics.median(runs["keywords"]), statistics.median(runs["described"])
    print(f"indexed : {seconds:6.2f} s for everyone ({len(subscribers) / seconds:,.0f} subscribers/s), "
          f"{total:,} papers placed in digests   target < 2 s: {'PASS' if seconds < 2 else 'FAIL'}")
    print(f"described: {described_seconds:6.2f} s with a description on every topic (closeness in words and meaning) and a "
          f"learned model on {sum(t.learned is not None for s in described for t in s.topics):,} topics, "
          f"{described_total:,} papers placed   target < 3 s: {'PASS' if described_seconds < 3 else 'FAIL'}  "
          f"({described_seconds / seconds:.2f}x the keyword-only run; medians of {args.runs} runs each)")
    print(f"          {encoding}")
    for count in (1_000, 5_000, args.subscribers):
        peak = peak_memory(run_indexed, subscribers[:count], papers, defaults)
        print(f"indexed : peak memory {peak / 2**20:6.1f} MiB with {count:>6,} subscribers")

    sample = subscribers[: args.naive_sample]
    naive_seconds, _ = timed(naive_digest_sizes, sample, papers, defaults)
    scale = len(subscribers) / len(sample)
    naive_peak = peak_memory(naive_digest_sizes, sample, papers, defaults)
    print(f"naive   : {naive_seconds:6.2f} s for {len(sample):,} subscribers (keyword matching only) "
          f"-> ~{naive_seconds * scale:,.0f} s extrapolated to {len(subscribers):,}; "
          f"peak memory {naive_peak / 2**20:.1f} MiB")
    print(f"speed-up: ~{naive_seconds * scale / seconds:,.0f}x")


if __name__ == "__main__":
    main()
