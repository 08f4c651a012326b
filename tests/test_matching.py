"""Matching: examples from the seeds, the tolerances promised for keywords, and invariants
(hypothesis) for grouping, ranking and limits."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import ArxivSource, Defaults, HuggingFaceSource, Subscriber, Topic
from digest.gather.adapters import arxiv, huggingface
from digest.match.matcher import Matcher
from digest.match.normalise import words
from digest.models import Digest, Paper

pytestmark = pytest.mark.clock  # also run under faketime at other dates (.ci/run)

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples"  # real titles, made-up ids
NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


def paper(id: str, title: str, abstract: str = "", **fields) -> Paper:
    fields.setdefault("first_seen_at", NOW - timedelta(hours=2))
    return Paper(id=id, title=title, url=f"https://arxiv.org/abs/{id}", abstract=abstract, **fields)


def subscriber(*topics: dict, **settings_) -> Subscriber:
    return Subscriber(email="alice@example.org", topics=[Topic(**t) for t in topics], **settings_)


def digest_for(papers, *topics: dict, defaults: Defaults | None = None, **settings_) -> Digest:
    sub = subscriber(*topics, **settings_)
    return Matcher([sub], defaults or Defaults(), papers).digest(sub, NOW)


def ids(digest: Digest) -> list[str]:
    return [p.id for p in digest.papers]


def matches(keyword: str, text: str) -> bool:
    return bool(ids(digest_for([paper("1", text)], {"name": "t", "keywords": [keyword]})))


@cache
def seed_papers() -> tuple[Paper, ...]:
    """The shipped listing (from the seeds), with upvotes from the shipped Hugging Face capture."""
    listing = arxiv.parse(ArxivSource(name="arxiv", type="arxiv", categories=["cs.LG"]),
                          (SAMPLES / "arxiv-listing.rss.xml").read_bytes(), NOW).papers
    votes = {p.id: p.upvotes for p in huggingface.parse(HuggingFaceSource(name="hf", type="huggingface"),
                                                        (SAMPLES / "hf-daily-papers.json").read_bytes(), NOW).papers}
    return tuple(Paper(**{**p.__dict__, "upvotes": votes.get(p.id), "first_seen_at": NOW - timedelta(hours=3)})
                 for p in listing)


# ---------------------------------------------------------------- keywords: what matches


@pytest.mark.parametrize("keyword, text", [
    ("KV cache", "Compressing the KV cache at test time"),
    ("KV cache", "A KV-cache eviction policy"),
    ("KV cache", "KVCache offloading for long prompts"),
    ("KV cache", "kv caches are large"),
    ("KV cache", "KV Caching through attention output error"),
    ("scaling law", "Scaling laws for downstream performance"),
    ("scaling laws", "A scaling law for vocabularies"),
    ("quantization", "Fine-tuning quantized LLMs once"),
    ("quantization", "Quantizing weights to 4 bits"),
    ("quantization", "Post-training quantisation"),
    ("quantization", "Quantised weights"),
    ("tokenizer", "A better tokeniser"),
    ("LoRA", "Fine-tuning with (LoRA) adapters"),
    ("RAG", "Long-context models versus RAG pipelines"),
    ("pretraining", "Efficient pre-training of transformers"),
    ("Müller", "A note by Muller on graphs"),
    ("attention", r"Linear \emph{attention} revisited"),
    ("transformer", "Ｔｒａｎｓｆｏｒｍｅｒ models"),
    ("speculative decoding", "SPECULATIVE DECODING with draft models"),
])
def test_keyword_matches_the_ways_people_write_it(keyword, text):
    assert matches(keyword, text)


@pytest.mark.parametrize("keyword, text", [
    ("RAG", "Cold storage for model weights"),
    ("RAG", "Average drag on a fragment"),
    ("LoRA", "Efficient exploration in reinforcement learning"),
    ("LoRA", "Floral patterns"),
    ("KV cache", "Cache-friendly KV stores"),  # both words, but not the phrase
    ("general", "Image generation at scale"),  # the stemmer is light: general ≠ generation
    ("attention", "Attentive listeners"),
    ("scaling law", "Law of large numbers for scaling"),
])
def test_keyword_never_matches_substrings_or_scattered_words(keyword, text):
    assert not matches(keyword, text)


def test_seeds_rag_and_lora_only_where_they_are_words():
    papers = seed_papers()
    rag = ids(digest_for(papers, {"name": "RAG", "keywords": ["RAG"]}, max_papers=500))
    assert rag == ["2611.10359"]  # the only abstract with the word; six others say "storage"
    lora = digest_for(papers, {"name": "LoRA", "keywords": ["LoRA"]}, max_papers=500)
    assert len(lora.papers) == 8  # seven "LoRA" and one "LoRAs"; none of the "exploration"s
    assert all("lora" in words(p.title + " " + p.abstract) for p in lora.papers)


def test_seeds_kv_cache_finds_every_spelling():
    papers = seed_papers()
    found = digest_for(papers, {"name": "KV", "keywords": ["KV cache"]}, max_papers=500)
    titles = [p.title for p in found.papers]
    assert any("KV Cach" in t for t in titles) and "2611.10207" in ids(found)  # "KV Caching"
    assert len(found.papers) >= 10


# ---------------------------------------------------------------- queries, exclude, categories, authors


def test_query_boolean_fields_and_wildcards():
    papers = [
        paper("1", "Speculative decoding for fast inference"),
        paper("2", "A survey of speculative decoding"),
        paper("3", "Draft models", "We verify draft tokens in parallel."),
        paper("4", "Quantized attention kernels"),
        paper("5", "Something else", "about speculative decoding", authors=("Tri Dao",)),
    ]
    query = '(title:"speculative decoding" AND NOT survey) OR (draft AND verif*) OR quantiz*'
    assert sorted(ids(digest_for(papers, {"name": "q", "query": query}))) == ["1", "3", "4"]
    assert ids(digest_for(papers, {"name": "q", "query": 'author:"T. Dao" abstract:speculative'})) == ["5"]


def test_exclude_vetoes_and_every_criterion_must_hold():
    papers = [
        paper("1", "KV cache compression", categories=("cs.CL",), upvotes=10),
        paper("2", "A survey of KV cache methods", categories=("cs.CL",), upvotes=10),
        paper("3", "KV cache for vision", categories=("cs.CV",), upvotes=10),
        paper("4", "KV cache quantization", categories=("cs.CL",), upvotes=1),
    ]
    topic = {"name": "t", "keywords": ["KV cache"], "exclude": ["survey"], "categories": ["cs.CL"], "min_upvotes": 5}
    assert ids(digest_for(papers, topic)) == ["1"]


def test_whole_archive_categories():
    papers = [paper("1", "A", categories=("cs.CL",)), paper("2", "B", categories=("stat.ML", "cs.LG")),
              paper("3", "C", categories=("math.OC",)), paper("4", "D", categories=("csx.AB",))]
    assert sorted(ids(digest_for(papers, {"name": "cs", "categories": ["cs.*"]}))) == ["1", "2"]


@pytest.mark.parametrize("followed, written, same", [
    ("Tri Dao", "Tri Dao", True),
    ("Tri Dao", "T. Dao", True),
    ("T. Dao", "Tri Dao", True),
    ("Tri Dao", "Dao, Tri", True),
    ("Tri Dao", "TRI DAO", True),
    ("Tri Dao", "Tom Dao", False),
    ("Tri Dao", "Tri Dang", False),
    ("Mateo Müller", "Mateo Muller", True),
    ("Zoe Dubois", "Zoë Dubois", True),
])
def test_authors_tolerant_of_initials_order_and_accents(followed, written, same):
    papers = [paper("1", "Some title", authors=("Ann Other", written))]
    found = digest_for(papers, {"name": "people", "authors": [followed]})
    assert bool(found.papers) is same
    if same:
        assert found.sections[0].entries[0].why == f"by {written}"


# ---------------------------------------------------------------- grouping, ranking, explaining


def test_one_section_per_paper_under_its_best_topic_with_also_in():
    papers = [paper("1", "Speculative decoding", "We also compress the KV cache."),
              paper("2", "KV cache compression", "With speculative decoding.")]
    found = digest_for(papers, {"name": "Spec", "keywords": ["speculative decoding"]},
                       {"name": "KV", "keywords": ["KV cache"]})
    sections = {s.topic: s.entries for s in found.sections}
    assert [e.paper.id for e in sections["Spec"]] == ["1"] and [e.paper.id for e in sections["KV"]] == ["2"]
    assert sections["Spec"][0].also_in == ("KV",) and sections["KV"][0].also_in == ("Spec",)


def test_ties_go_to_the_subscribers_first_topic():
    papers = [paper("1", "Quantization and pruning")]
    found = digest_for(papers, {"name": "B", "keywords": ["pruning"]}, {"name": "A", "keywords": ["quantization"]})
    assert [s.topic for s in found.sections] == ["B"] and found.sections[0].entries[0].also_in == ("A",)


def test_ranking_title_over_abstract_more_terms_phrase_over_word():
    papers = [
        paper("abstract", "Efficient models", "We study quantization."),
        paper("title", "Quantization of models"),
        paper("two", "Quantization and pruning of models"),
        paper("phrase", "Speculative decoding"),
        paper("word", "Decoding"),
    ]
    found = digest_for(papers, {"name": "t", "keywords": ["quantization", "pruning"]},
                       {"name": "u", "keywords": ["speculative decoding", "decoding"]})
    order = {s.topic: [e.paper.id for e in s.entries] for s in found.sections}
    assert order["t"] == ["two", "title", "abstract"]
    assert order["u"] == ["phrase", "word"]


def test_upvotes_break_equal_relevance_and_ids_break_the_rest():
    papers = [paper("3", "Pruning"), paper("1", "Pruning"), paper("2", "Pruning", upvotes=40)]
    assert ids(digest_for(papers, {"name": "t", "keywords": ["pruning"]})) == ["2", "1", "3"]


def test_explanations_say_what_matched_where():
    papers = [paper("1", "KV cache eviction", "Also speculative decoding.", upvotes=42),
              paper("2", "Other", "", categories=("cs.CL",))]
    found = digest_for(papers, {"name": "t", "keywords": ["KV cache", "speculative decoding"]},
                       {"name": "c", "categories": ["cs.CL"]})
    whys = {e.paper.id: e.why for s in found.sections for e in s.entries}
    assert whys["1"] == 'matched "KV cache" in title, "speculative decoding" in abstract; 42 upvotes'
    assert whys["2"] == "in cs.CL"


def test_limits_drop_the_lowest_ranked_and_count_them():
    papers = [paper(str(n), "Pruning" if n % 2 else "x", "pruning", upvotes=n) for n in range(1, 21)]
    found = digest_for(papers, {"name": "t", "keywords": ["pruning"]}, max_papers=5)
    assert len(found.papers) == 5 and found.omitted == 15 and found.sections[0].omitted == 15
    assert ids(found) == ["19", "17", "15", "13", "11"]  # title matches first, then upvotes


def test_trending_section_counts_within_max_papers():
    papers = [paper(str(n), f"Paper {n}", upvotes=n) for n in range(1, 11)] + [paper("k", "Pruning")]
    found = digest_for(papers, {"name": "t", "keywords": ["pruning"]}, max_papers=4, trending=3)
    assert [s.topic for s in found.sections] == ["t", "Trending"]
    assert [e.paper.id for e in found.sections[-1].entries] == ["10", "9", "8"]
    assert found.sections[-1].entries[0].why == "trending: 10 upvotes on Hugging Face"


def test_newly_seen_window_and_delivered_papers():
    old = paper("old", "Pruning", first_seen_at=NOW - timedelta(days=3))
    new = paper("new", "Pruning")
    sent = paper("sent", "Pruning")
    sub = subscriber({"name": "t", "keywords": ["pruning"]})
    matcher = Matcher([sub], Defaults(), [old, new, sent])
    assert ids(matcher.digest(sub, NOW, delivered={"sent"})) == ["new"]
    assert sorted(ids(matcher.digest(sub, NOW, since=NOW - timedelta(days=7), delivered={"sent"}))) == ["new", "old"]


# ---------------------------------------------------------------- invariants (hypothesis)

VOCABULARY = ["cache", "decoding", "pruning", "agent", "reward", "vision", "graph", "memory", "retrieval",
              "diffusion", "kernel", "token", "policy", "robot", "speech", "law", "scaling", "sparse"]
text_strategy = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=12).map(" ".join)
papers_strategy = st.lists(
    st.tuples(text_strategy, text_strategy, st.integers(0, 60), st.sampled_from(["cs.CL", "cs.LG", "cs.CV"])),
    min_size=1, max_size=30,
).map(lambda rows: [paper(f"2611.{n:05d}", t, a, upvotes=u, categories=(c,)) for n, (t, a, u, c) in enumerate(rows)])
topic_strategy = st.builds(
    lambda name, kws, ex, cat: {"name": name, "keywords": kws, **({"exclude": ex} if ex else {}),
                                **({"categories": [cat]} if cat else {})},
    st.text("abcdefgh", min_size=1, max_size=6),
    st.lists(st.sampled_from(VOCABULARY + ["sparse kernel", "scaling law", "graph memory"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(VOCABULARY), max_size=1),
    st.sampled_from([None, "cs.CL", "cs.*"]),
)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(papers_strategy, st.lists(topic_strategy, min_size=1, max_size=4, unique_by=lambda t: t["name"]),
       st.integers(1, 12), st.none() | st.integers(1, 4), st.integers(0, 3))
def test_invariants_once_within_limits_counted(papers, topics, max_papers, max_per_topic, trending):
    found = digest_for(papers, *topics, max_papers=max_papers, max_per_topic=max_per_topic, trending=trending)
    shown = ids(found)
    assert len(shown) == len(set(shown))  # a paper at most once
    assert len(shown) <= max_papers
    for section in found.sections:
        assert section.entries
        if not section.trending:
            assert max_per_topic is None or len(section.entries) <= max_per_topic
            scores = [(-e.score, -(e.paper.upvotes or 0), e.paper.id) for e in section.entries]
            assert scores == sorted(scores)
            assert all(e.why.startswith("matched") for e in section.entries)
    # what was matched = what is shown in topic sections + what the digest says it left out
    sub = subscriber(*topics)
    matcher = Matcher([sub], Defaults(), papers)
    unlimited = matcher.digest(subscriber(*topics, max_papers=500), NOW)
    topic_shown = sum(len(s.entries) for s in found.sections if not s.trending)
    assert topic_shown + found.omitted == len(unlimited.papers)


@pytest.mark.undated
@fast
@given(papers_strategy, st.lists(topic_strategy, min_size=1, max_size=4, unique_by=lambda t: t["name"]),
       st.randoms(use_true_random=False))
def test_invariant_same_digest_whatever_the_order_of_papers(papers, topics, rnd):
    first = digest_for(papers, *topics, trending=2)
    shuffled = list(papers)
    rnd.shuffle(shuffled)
    again = digest_for(shuffled, *topics, trending=2)
    assert first == again


@fast
@given(st.sampled_from(VOCABULARY + ["scaling law", "sparse kernel"]), text_strategy, st.randoms(use_true_random=False))
def test_invariant_case_insensitive(keyword, text, rnd):
    def shout(s: str) -> str:
        return "".join(c.upper() if rnd.random() < 0.5 else c for c in s)

    assert matches(keyword, text) == matches(shout(keyword), shout(text))


@fast
@given(st.sampled_from(VOCABULARY + ["lora", "rag", "kv"]), text_strategy,
       st.text("bcdfghjkmpqvwxz", min_size=1, max_size=3))
def test_invariant_no_substring_matches(keyword, text, glue):
    text = " ".join(w for w in text.split() if w != keyword)
    assert not matches(keyword, f"{text} {glue}{keyword} {text}")
    assert matches(keyword, f"{text} {keyword} {text}")


@fast
@given(st.sampled_from([("law", "laws"), ("cache", "caches"), ("policy", "policies"), ("token", "tokens"),
                        ("prune", "pruned"), ("decode", "decoding"), ("quantization", "quantized"),
                        ("embedding", "embeddings"), ("graph", "graphs")]),
       st.booleans(), text_strategy)
def test_invariant_inflections_match_both_ways(pair, reverse, text):
    keyword, written = pair[::-1] if reverse else pair
    assert matches(keyword, f"{text} {written}")


def test_invariant_deterministic_on_the_seeds():
    papers = list(seed_papers())
    topics = [{"name": "Inference", "keywords": ["KV cache", "speculative decoding", "quantization"]},
              {"name": "Scaling", "keywords": ["scaling law"]},
              {"name": "Agents", "query": "agent* OR \"tool use\""}]
    first = digest_for(papers, *topics, trending=3)
    random.Random(1).shuffle(papers)
    assert digest_for(papers, *topics, trending=3) == first
    assert len(first.papers) == 25 and first.omitted > 0


def test_an_abstract_that_keeps_saying_it_ranks_above_a_passing_mention():
    papers = [paper("once", "Efficient models", "We also try pruning. " + "Other words. " * 20),
              paper("often", "Efficient models", "Pruning matters. We prune heads. Pruned models are fast. Pruning.")]
    assert ids(digest_for(papers, {"name": "t", "keywords": ["pruning"]})) == ["often", "once"]


# ---------------------------------------------------------------- criteria combine with AND


def test_keywords_and_query_must_both_hold():
    papers = [paper("both", "A KV cache for speculative decoding"),
              paper("keyword-only", "A KV cache for retrieval"),
              paper("query-only", "Speculative decoding with drafts")]
    topic = {"name": "t", "keywords": ["KV cache"], "query": '"speculative decoding"'}
    assert ids(digest_for(papers, topic)) == ["both"]


@pytest.mark.parametrize("criterion", [
    {"categories": ["cs.CL"]}, {"authors": ["Tri Dao"]}, {"min_upvotes": 10}, {"exclude": ["retrieval"]}])
def test_every_other_criterion_narrows_a_query(criterion):
    fit = paper("fit", "Speculative decoding", categories=("cs.CL",), authors=("Tri Dao",), upvotes=10)
    unfit = paper("unfit", "Speculative decoding for retrieval", categories=("cs.CV",), authors=("Tom Dao",), upvotes=9)
    assert ids(digest_for([fit, unfit], {"name": "t", "query": '"speculative decoding"', **criterion})) == ["fit"]


def test_min_upvotes_is_at_least():
    papers = [paper(str(n), f"KV cache part {n}", upvotes=n) for n in (4, 5, 6)]
    assert sorted(ids(digest_for(papers, {"name": "t", "keywords": ["KV cache"], "min_upvotes": 5}))) == ["5", "6"]
    assert ids(digest_for(papers, {"name": "t", "min_upvotes": 6})) == ["6"]


def test_an_initial_never_joins_two_surnames():
    papers = [paper("smith", "A paper", authors=("T. Smith",)), paper("dao", "A paper", authors=("T. Dao",))]
    assert ids(digest_for(papers, {"name": "t", "authors": ["T. Dao"]})) == ["dao"]
    assert ids(digest_for(papers, {"name": "t", "authors": ["Tri Dao"]})) == ["dao"]


def test_each_topic_keeps_its_own_categories_and_authors():
    papers = [paper("cl", "A paper", categories=("cs.CL",), authors=("Ann Lee",)),
              paper("cv", "A paper", categories=("cs.CV",), authors=("Bo Chen",))]
    digest = digest_for(papers, {"name": "Language", "categories": ["cs.CL"]}, {"name": "Vision", "categories": ["cs.CV"]},
                        {"name": "Lee", "authors": ["Ann Lee"]}, {"name": "Chen", "authors": ["Bo Chen"]})
    by_topic = {s.topic: [e.paper.id for e in s.entries] for s in digest.sections}
    assert by_topic == {"Lee": ["cl"], "Chen": ["cv"]}  # an author (3) outweighs a category (0.5)
    also = {e.paper.id: e.also_in for s in digest.sections for e in s.entries}
    assert also == {"cl": ("Language",), "cv": ("Vision",)}


@pytest.mark.parametrize("query, expected", [
    ("category:cs*", ["cl", "cv"]), ("category:cs.*", ["cl", "cv"]), ("category:cs.CL", ["cl"]),
    ('LLM OR author:"!!"', ["cl"]),  # a name with no letters finds nobody, and breaks nothing
])
def test_query_categories_and_odd_authors(query, expected):
    papers = [paper("cl", "An LLM paper", categories=("cs.CL",)), paper("cv", "A paper", categories=("cs.CV",)),
              paper("math", "A paper", categories=("math.OC",))]
    assert sorted(ids(digest_for(papers, {"name": "t", "query": query}))) == expected


def test_only_terms_that_count_for_the_paper_add_relevance():
    # survey sits under one NOT (it counts against), review under two (it counts for)
    query = "LLM AND NOT (survey AND NOT review)"
    digest = digest_for([paper("a", "LLM survey review")], {"name": "t", "query": query})
    entry = digest.sections[0].entries[0]
    assert set(entry.matched_terms) == {"LLM", "review"}  # never "survey"


def test_the_fast_entry_constructor_is_the_constructor():
    """`DigestEntry.made` (the matcher's, setting the slots directly) makes what the dataclass's
    constructor makes: equal, same hash and repr, frozen, every field set (a field added to
    DigestEntry and not to `made` fails here)."""
    import dataclasses
    import pickle

    from digest.models import DigestEntry

    paper = Paper(id="arxiv:2501.00001", title="A paper", url="https://arxiv.org/abs/2501.00001")
    values = (paper, 0.75, "matches “llm” in the title", ("llm",), ("Agents",))
    made, built = DigestEntry.made(*values), DigestEntry(*values)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert [getattr(made, f.name) for f in dataclasses.fields(DigestEntry)] == list(values)
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.score = 1.0  # type: ignore[misc]


def test_a_topic_in_use_keeps_its_plan_while_thousands_of_others_pass():
    """The plan cache drops the least recently used topic, not the oldest: a topic many
    subscribers share keeps its one evaluation however many unique topics come between."""
    popular = Topic(name="LLMs", keywords=["language model"])
    others = [Topic(name=f"t{n}", keywords=[f"term{n}"]) for n in range(5000)]
    matcher = Matcher([Subscriber(email="a@example.org", topics=[popular])], Defaults(), list(seed_papers())[:20])
    first = matcher.plan(popular)
    for n, topic in enumerate(others):
        matcher.plan(topic)
        if n % 1000 == 0:
            assert matcher.plan(popular) is first
    assert matcher.plan(popular) is first and first.shared


def test_relevance_looked_up_by_quarters_is_the_formula_and_computes_off_the_quarters():
    """Relevance is looked up for sums of weights in quarters (all of today's weights), and
    computed for any other sum (a weight tuned to, say, 0.3): the same values either way."""
    import numpy as np

    from digest.match.topics import relevance
    from digest.match.weights import RELEVANCE, SATURATION

    for raw in (np.arange(0, 200, 0.25), np.array([0.3, 1.25, 7.1, 400.0])):
        assert np.array_equal(relevance(raw), RELEVANCE * (1.0 - np.exp(-raw / SATURATION)))


# ---------------------------------------------------------------- many subscribers at once = one by one

DIFFERENTIAL_TERMS = ["language model", "KV cache", "speculative decoding", "quantiz*", "attention", "agent",
                      "reasoning", "diffusion", "LoRA", "benchmark", "survey", "transformer", "token*", "graph",
                      "reinforcement learning", "retrieval", "vision", "no such word"]


def random_topic(rnd: random.Random, n: int) -> Topic:
    """A topic of any kind: keywords (with excludes, categories), a query, authors (of the
    seeds), upvotes, a description alone."""
    papers = seed_papers()
    spec: dict = {"name": f"topic {n}"}
    kind = rnd.random()
    if kind < 0.6:
        spec["keywords"] = rnd.sample(DIFFERENTIAL_TERMS, rnd.randint(1, 4))
        spec["keywords"] += rnd.sample(spec["keywords"], rnd.random() < 0.1)  # a keyword said twice
    elif kind < 0.8:
        a, b, c = rnd.sample([t for t in DIFFERENTIAL_TERMS if not t.endswith("*")], 3)
        spec["query"] = rnd.choice([f'"{a}" OR ("{b}" AND NOT "{c}")', f'title:"{a}" OR abstract:token*',
                                    f'"{a}" AND (category:cs.CV OR author:"{rnd.choice(papers).authors[0]}")'])
    elif kind < 0.87:
        spec["authors"] = [rnd.choice(rnd.choice(papers).authors) for _ in range(rnd.randint(1, 2))]
    elif kind < 0.94:
        spec["min_upvotes"] = rnd.choice([0, 2, 5])
    else:  # a description alone
        spec["description"] = rnd.choice(DESCRIPTIONS)
    if rnd.random() < 0.25:
        spec["exclude"] = rnd.sample(DIFFERENTIAL_TERMS, 1)
    if rnd.random() < 0.25:
        spec["categories"] = rnd.sample(["cs.CL", "cs.CV", "cs.AI", "stat.ML", "cs.*", "math.OC"], rnd.randint(1, 2))
    if rnd.random() < 0.3:  # described: matched by closeness to its words, keywords a bonus
        spec["description"] = rnd.choice(DESCRIPTIONS)
        spec["sensitivity"] = rnd.choice([0, 0, 2, -2])
    if rnd.random() < 0.15:  # what the reader's ratings taught (learned.py): any kind of topic
        spec["learned"] = taught(rnd.choice(range(4)))
    return Topic(**spec)


@cache
def taught(n: int):  # noqa: ANN201
    """A model learned from ratings of the seeds: n liked papers' worth of them."""
    from digest.match.learned import train

    papers = seed_papers()
    disliked = papers[40 + n:42 + n] if n else []  # n = 0: likes only (a model that only lifts)
    return train(papers[n * 7:n * 7 + 3], disliked, papers[60:90])


DESCRIPTIONS = ["Making language model inference cheaper: KV-cache compression, speculative decoding, quantization.",
                "Agents that use tools and browse the web, and benchmarks for them.",
                "Diffusion models for image and video generation.",
                "Reasoning in large language models: math, chain-of-thought and reinforcement learning."]


@pytest.mark.undated
@pytest.mark.parametrize("seed", range(12))
def test_digests_for_many_at_once_are_the_digests_one_by_one(seed, monkeypatch):
    """`Matcher.digests` (a block of subscribers at a time) makes exactly the digest that
    `Matcher.digest` (the reference, one subscriber) makes for each: random topics of every
    kind, shared and repeated topics, limits, trending, windows and delivered papers, blocks
    of every size."""
    from digest.match import block

    rnd = random.Random(seed)
    papers = [Paper(**{**p.__dict__, "upvotes": rnd.choice([None, 0, 1, 3, 8, 40, p.upvotes]),
                       "first_seen_at": rnd.choice([None, NOW - timedelta(hours=rnd.uniform(0, 60))])})
              for p in rnd.sample(seed_papers(), rnd.choice([0, 1, 8, 60, 120]))]
    pool = [random_topic(rnd, n) for n in range(30)]
    subscribers = []
    for n in range(60):
        topics = [rnd.choice(pool) if rnd.random() < 0.4 else random_topic(rnd, 100 + t)
                  for t in range(rnd.choice([0, 1, 2, 3, 5, 8]))]
        topics = list({t.name: t for t in topics}.values())  # names are unique within a subscriber
        subscribers.append(Subscriber(
            email=f"user{n}@example.org", topics=topics, max_papers=rnd.choice([None, 1, 3, 10, 500]),
            max_per_topic=rnd.choice([None, None, 1, 2]), trending=rnd.choice([None, 0, 2, 5]),
            lookback=rnd.choice([None, timedelta(hours=12), timedelta(days=3)])))
    windows = {s.email: (rnd.choice([None, NOW - timedelta(hours=rnd.uniform(0, 48))]),
                         {p.id for p in rnd.sample(papers, rnd.randint(0, min(5, len(papers))))} | {"gone"})
               for s in subscribers}
    monkeypatch.setattr(block, "BLOCK_CELLS", rnd.choice([1, 500, 5000, 1 << 20]))
    defaults = Defaults(max_per_topic=rnd.choice([None, None, 3]), trending=rnd.choice([0, 1]))

    at_once = list(Matcher(subscribers, defaults, papers).digests(subscribers, NOW, lambda s: windows[s.email]))
    reference = Matcher(subscribers, defaults, papers)
    assert at_once == [reference.digest(s, NOW, *windows[s.email]) for s in subscribers]


@cache
def seed_words():  # noqa: ANN201
    from digest.match.index import paper_words

    return paper_words(seed_papers())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(topic_strategy, min_size=1, max_size=4, unique_by=lambda t: t["name"]),
       st.sampled_from([None, "quantiz*", "transform*", "token*", "4bit", "adhoc", "activation-aware"]),
       st.sampled_from([None, "Fatima Andersson", "Lukas Singh", "Wei Kowalski", "M. Novak"]))
def test_papers_read_once_match_as_papers_read_each_time(topics, prefix, author):
    """The manage page's preview indexes the day's papers from words read once (paper_words);
    it finds exactly what reading the text finds: phrases, compounds, prefixes, authors."""
    papers = seed_papers()
    extras = ([{"name": "extra", "keywords": [prefix]}] if prefix else []) + (
        [{"name": "author", "authors": [author]}] if author else [])  # authors named last in their papers
    sub = subscriber(*topics, *extras, max_papers=500)
    read, scanned = Matcher([sub], Defaults(), papers, seed_words()), Matcher([sub], Defaults(), papers)
    assert read.index.hits == scanned.index.hits
    assert read.index.by_author == scanned.index.by_author and read.index.by_category == scanned.index.by_category
    assert read.digest(sub, NOW) == scanned.digest(sub, NOW)
