"""Rendering: 1,000 distinct 30-paper digests, compiled renderer vs the full chain.

    python bench/render.py [--digests 1000] [--papers 30] [--naive-sample 60] [--runs 3]

Target: at least 1,000 digests per second in one process, with output identical to the full
chain (Jinja → MJML → premailer for every digest). Prints digests/second and peak memory
for both, in the same run; the full chain is timed on a sample (it is ~100x slower). The
compiled renderer's figure is the median of --runs runs, each from empty caches (a process
forked before rendering anything), beside its steady state (the next 1,000 digests each).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# A cache folder of its own: "compiled once in" is MJML and premailer's run, not a kept copy read
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="digest-bench-render-")

from digest.config import ArxivSource, Config, HuggingFaceSource, Sender, Subscriber, Topic  # noqa: E402
from digest.gather.adapters import arxiv, huggingface  # noqa: E402
from digest.models import Digest, DigestEntry, Paper, Section  # noqa: E402
from digest.render.compose import Composer, fit, probe_values  # noqa: E402
from digest.render.processes import as_rendering_process  # noqa: E402
from digest.render.renderer import CompiledRenderer, NaiveRenderer  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples"  # real titles, made-up ids
NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
TERMS = ["KV cache", "quantization", "reasoning", "diffusion", "agent", "benchmark", "scaling law", "attention"]


def seed_papers() -> list[Paper]:
    listing = arxiv.parse(ArxivSource(name="a", type="arxiv", categories=["cs.LG"]),
                          (SAMPLES / "arxiv-listing.rss.xml").read_bytes(), NOW).papers
    hf = {p.id: p for p in huggingface.parse(HuggingFaceSource(name="h", type="huggingface"),
                                             (SAMPLES / "hf-daily-papers.json").read_bytes(), NOW).papers}
    return [p.merged_with(hf[p.id]) if p.id in hf else p for p in listing]


def make_digests(count: int, size: int, distinct: bool = False) -> list[tuple[Digest, Subscriber]]:
    """Each digest picks papers and topics at random; a paper matched by the same term scores
    the same in every digest (as the matcher scores it), unless `distinct` (every card unique)."""
    rng = random.Random(3)
    papers = seed_papers()
    out = []
    for n in range(count):
        chosen = rng.sample(papers, size)
        topics = [f"Topic {t}" for t in rng.sample(range(1, 20), 3)]
        sections = []
        for t, topic in enumerate(topics):
            part = chosen[t * size // 3:(t + 1) * size // 3]
            entries = tuple(DigestEntry(p, round(rng.random(), 4) if distinct else _score(p.id, term), f'matched "{term}" in abstract; {p.upvotes or 0} upvotes',
                                        (term,), (topics[(t + 1) % 3],) if rng.random() < 0.2 else ())
                            for p in part for term in [rng.choice(TERMS)])
            sections.append(Section(topic, entries, omitted=rng.randint(0, 5)))
        subscriber = Subscriber(email=f"reader{n}@example.org", name=f"Reader {n}",
                                topics=[Topic(name=t, keywords=[rng.choice(TERMS)]) for t in topics])
        digest = Digest(subscriber.email, subscriber.name, NOW, NOW - timedelta(days=1), tuple(sections))
        out.append((digest, subscriber))
    return out


def _score(paper_id: str, term: str) -> float:
    return round(random.Random(f"{paper_id}/{term}").random(), 4)


def run(composer: Composer, digests) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    results = []
    for digest, subscriber in digests:
        context = composer.values(digest, subscriber)
        values, html, _ = fit(context, composer.renderer, composer.budget)
        results.append((html, composer.renderer.text(values)))
    return results


def timed(composer: Composer, digests) -> tuple[float, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """Digests/s of one run, and what it rendered."""
    gc.collect()
    start = time.perf_counter()
    results = run(composer, digests)
    return len(digests) / (time.perf_counter() - start), results


def measure(composer: Composer, digests) -> tuple[float, float, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """`timed`, and the peak memory of rendering (up to) 100 of the digests again."""
    rate, results = timed(composer, digests)
    gc.collect()
    tracemalloc.start()
    run(composer, digests[: min(len(digests), 100)])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rate, peak, results


def cold_rate(composer: Composer, digests) -> float:  # type: ignore[no-untyped-def]
    """Digests/s of one run from empty caches: in a child forked before this process rendered
    anything (a process of a send starts so), its figure sent back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, struct.pack("d", timed(composer, digests)[0]))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    return struct.unpack("d", data)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digests", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=30)
    parser.add_argument("--naive-sample", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure; the median is printed")
    parser.add_argument("--distinct-cards", action="store_true",
                        help="worst case: no card recurs across digests (random scores)")
    args = parser.parse_args()

    config = Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>"}), base_url="https://digest.example.org")
    digests = make_digests(args.digests * (args.runs + 1), args.papers, args.distinct_cards)
    start = time.perf_counter()
    compiled = Composer(config, secret="bench", renderer=CompiledRenderer(probes=probe_values()))
    compile_seconds = time.perf_counter() - start
    assert compiled.renderer.compiled, compiled.renderer.fallback_reason
    naive = Composer(config, secret="bench", renderer=NaiveRenderer())
    as_rendering_process()  # as the processes a send renders in are set (digest/render/processes.py)

    # Each run from empty caches (the first digests of a rendering process), the median of
    # --runs; then the steady state: the next digests, after the first ones filled the caches.
    rates = [cold_rate(compiled, digests[: args.digests]) for _ in range(args.runs)]
    rate = statistics.median(rates)
    _, peak, results = measure(compiled, digests[: args.digests])
    steady = statistics.median(timed(compiled, digests[args.digests * n:args.digests * (n + 1)])[0]
                               for n in range(1, args.runs + 1))
    sizes = sorted(len(h.encode()) for h, _ in results)
    print(f"workload: {args.digests:,} distinct digests of {args.papers} papers (seed papers), HTML + text part, "
          f"{'every card unique' if args.distinct_cards else 'cards recur as scored'}; medians of {args.runs} runs")
    print(f"compiled: {rate:8,.0f} digests/s from empty caches (runs: {', '.join(f'{r:,.0f}' for r in rates)})   "
          f"target >= 1,000/s: {'PASS' if rate >= 1000 else 'FAIL'}")
    print(f"          {steady:8,.0f} digests/s steady (the next {args.digests:,} digests each, caches as the first left them)   "
          f"peak memory {peak / 2**20:5.1f} MiB (100 digests)   compiled once in {compile_seconds * 1000:.0f} ms")
    sample = digests[: args.naive_sample]
    naive_rate, naive_peak, naive_results = measure(naive, sample)
    print(f"naive   : {naive_rate:8,.1f} digests/s   peak memory {naive_peak / 2**20:5.1f} MiB (sample of {len(sample)})")
    same = sum(a == b for a, b in zip(naive_results, results))
    print(f"output  : {same}/{len(sample)} identical to the full chain; HTML size median {sizes[len(sizes) // 2]:,} B, "
          f"max {sizes[-1]:,} B (budget 90,000 B)")
    print(f"speed-up: {rate / naive_rate:,.0f}x")


if __name__ == "__main__":
    main()
