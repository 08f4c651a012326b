"""The score of a paper, to the fourth decimal, from the weights the README states: title 3,
abstract 1 (+0.5 a repeat, up to 2.5), a phrase ×1.5, an author 3, a category 0.5, saturating
1 − e^(−x/2.5); score = 0.7 relevance + 0.2 trending (log upvotes, full at 200) + 0.1 freshness
(e^(−age/72 h)). Expected values are computed here from those numbers, not read from the code."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import Defaults, Subscriber, Topic
from digest.match import Matcher
from digest.models import Paper

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


def score(raw: float, upvotes: int = 0, age_hours: float = 0.0) -> float:
    relevance = 1 - math.exp(-raw / 2.5)
    trend = min(1.0, math.log1p(upvotes) / math.log1p(200))
    return round(0.7 * relevance + 0.2 * trend + 0.1 * math.exp(-age_hours / 72), 4)


def paper(title: str, abstract: str = "", *, upvotes: int | None = None, age_hours: float = 0.0,
          authors: tuple[str, ...] = (), categories: tuple[str, ...] = (), id: str = "2611.00001") -> Paper:
    return Paper(id=id, title=title, url=f"https://arxiv.org/abs/{id}", abstract=abstract, upvotes=upvotes,
                 authors=authors, categories=categories, first_seen_at=NOW - timedelta(hours=age_hours))


def entry(p: Paper, **topic):  # noqa: ANN201
    subscriber = Subscriber(email="a@example.org", topics=[Topic(name="t", **topic)])
    digest = Matcher([subscriber], Defaults(lookback=timedelta(days=30)), [p]).digest(subscriber, NOW)
    entries = [e for s in digest.sections for e in s.entries]
    assert len(entries) == 1, digest
    return entries[0]


@pytest.mark.parametrize("p, topic, raw", [
    (paper("An LLM paper"), {"keywords": ["LLM"]}, 3.0),  # title
    (paper("A paper", "About an LLM."), {"keywords": ["LLM"]}, 1.0),  # abstract once
    (paper("A paper", "LLM. LLM."), {"keywords": ["LLM"]}, 1.5),  # said again: +0.5
    (paper("A paper", "LLM. LLM. LLM."), {"keywords": ["LLM"]}, 2.0),
    (paper("A paper", "LLM. LLM. LLM. LLM."), {"keywords": ["LLM"]}, 2.5),  # up to 2.5
    (paper("A paper", "LLM. " * 9), {"keywords": ["LLM"]}, 2.5),  # and no more
    (paper("An LLM paper", "LLM. LLM."), {"keywords": ["LLM"]}, 3.0),  # the better of title and abstract
    (paper("A KV cache paper"), {"keywords": ["KV cache"]}, 4.5),  # a phrase: ×1.5
    (paper("A paper", "A KV cache."), {"keywords": ["KV cache"]}, 1.5),
    (paper("LLM with a KV cache"), {"keywords": ["LLM", "KV cache"]}, 7.5),  # distinct terms add up
    (paper("A paper", authors=("Tri Dao",)), {"authors": ["Tri Dao"]}, 3.0),
    (paper("A paper", categories=("cs.CL",)), {"categories": ["cs.CL"]}, 0.5),
    (paper("An LLM paper", categories=("cs.CL",)), {"keywords": ["LLM"], "categories": ["cs.CL"]}, 3.5),
    (paper("An LLM paper", authors=("Tri Dao",)), {"query": "LLM AND author:\"Tri Dao\""}, 6.0),
    (paper("An LLM paper"), {"query": "LLM AND NOT survey"}, 3.0),  # a NOT term adds nothing
    (paper("An LLM paper", "about quantization"), {"query": "title:LLM quantiz*"}, 4.0),  # fields and wildcards
    (paper("An LLM paper", "about LLM"), {"query": "abstract:LLM"}, 1.0),  # the field counts, not the title
    (paper("A paper", categories=("cs.CL",)), {"query": "category:cs.CL"}, 0.5),
])
def test_relevance(p, topic, raw):
    assert entry(p, **topic).score == score(raw)


def test_upvotes_alone_add_no_relevance():
    assert entry(paper("A paper", upvotes=7), min_upvotes=5).score == score(0.0, upvotes=7)


@pytest.mark.parametrize("upvotes, age_hours", [(0, 0), (1, 0), (42, 0), (200, 0), (5000, 0), (0, 24), (10, 72), (0, 700)])
def test_trending_and_freshness(upvotes, age_hours):
    p = paper("An LLM paper", upvotes=upvotes, age_hours=age_hours)
    assert entry(p, keywords=["LLM"]).score == score(3.0, upvotes, age_hours)


def test_a_paper_seen_in_the_future_is_fresh_not_fresher():
    p = paper("An LLM paper", age_hours=-5)  # a clock ahead elsewhere
    assert entry(p, keywords=["LLM"]).score == score(3.0)


@pytest.mark.parametrize("p, topic, why", [
    (paper("An LLM paper", "quantization of a KV cache"), {"keywords": ["KV cache", "LLM", "quantization"]},
     'matched "LLM" in title, "KV cache" in abstract, "quantization" in abstract'),
    (paper("A b c d e", "a1 b1 c1 d1"), {"keywords": ["a1", "b1", "c1", "d1"]},
     'matched "a1" in abstract, "b1" in abstract, "c1" in abstract (+1 more)'),
    (paper("An LLM paper", upvotes=1), {"keywords": ["LLM"]}, 'matched "LLM" in title; 1 upvote'),
    (paper("An LLM paper", upvotes=42), {"keywords": ["LLM"]}, 'matched "LLM" in title; 42 upvotes'),
    (paper("A paper", authors=("Tri Dao", "X Y")), {"authors": ["T. Dao"]}, "by Tri Dao"),
    (paper("An LLM paper", authors=("Tri Dao",)), {"keywords": ["LLM"], "authors": ["Tri Dao"]},
     'matched "LLM" in title; by Tri Dao'),
    (paper("A paper", categories=("cs.CL", "cs.LG")), {"categories": ["cs.*"]}, "in cs.CL, cs.LG"),
    (paper("An LLM paper", categories=("cs.CL",)), {"keywords": ["LLM"], "categories": ["cs.CL"]},
     'matched "LLM" in title'),  # the category is said only when nothing else is
    (paper("A quantized model"), {"query": "quantiz*"}, 'matched "quantiz*" in title'),
    (paper("A paper", upvotes=9), {"min_upvotes": 5}, "9 upvotes"),
])
def test_explanations(p, topic, why):
    assert entry(p, **topic).why == why


def test_rank_ties_break_by_upvotes_then_id():
    papers = [paper("An LLM paper", id="2611.00003", upvotes=5), paper("An LLM paper", id="2611.00001", upvotes=5),
              paper("An LLM paper", id="2611.00002", upvotes=9)]
    subscriber = Subscriber(email="a@example.org", topics=[Topic(name="t", keywords=["LLM"])])
    digest = Matcher([subscriber], Defaults(), papers).digest(subscriber, NOW)
    assert [p.id for p in digest.papers] == ["2611.00002", "2611.00001", "2611.00003"]


def test_the_explanation_names_only_the_followed_author():
    p = paper("A paper", authors=("T. Dao", "T. Smith", "Ann Dao"))
    assert entry(p, authors=["Tri Dao"]).why == "by T. Dao"
