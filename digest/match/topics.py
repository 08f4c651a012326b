"""One topic compiled against the term table, evaluated on all papers at once; what a paper matched."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache, reduce
from typing import TYPE_CHECKING

import numpy as np

from ..config import Defaults, Subscriber, Topic
from ..models import DigestEntry, Paper
from ..query import And, Node, Not, Term, parse_query
from .explain import explain
from .index import AuthorName, PaperIndex, _category_ok
from .relevance import KEYWORD_BONUS, SENSITIVITY_STEP, TopicText
from .relevance import THRESHOLD as DESCRIPTION_THRESHOLD
from .relevance import terms as relevance_terms
from .terms import TermTable
from .weights import (
    _FIELD_BITS,
    ABSTRACT,
    AUTHOR_WEIGHT,
    CATEGORY_WEIGHT,
    DESCRIPTION_WEIGHT,
    RELEVANCE,
    SATURATION,
    TITLE,
)

if TYPE_CHECKING:
    from .learned import Learned


@dataclass(frozen=True)
class Settings:
    """A subscriber's effective limits (their own value, else the defaults)."""

    max_papers: int
    max_per_topic: int | None
    trending: int
    lookback: timedelta

    @classmethod
    def of(cls, subscriber: Subscriber, defaults: Defaults) -> Settings:
        def pick(name: str):  # type: ignore[no-untyped-def]
            own = getattr(subscriber, name)
            return own if own is not None else getattr(defaults, name)

        return cls(pick("max_papers"), pick("max_per_topic"), pick("trending"), pick("lookback"))


def _polarity(node: Node, positive: bool = True) -> Iterator[tuple[Term, bool]]:
    """Each term of a query with whether it counts for the paper (not under an odd number of NOTs)."""
    if isinstance(node, Term):
        yield node, positive
    elif isinstance(node, Not):
        yield from _polarity(node.operand, not positive)
    else:
        for child in node.operands:
            yield from _polarity(child, positive)


Shown = tuple[list[tuple[str, int, int]], list[AuthorName], tuple[str, ...]]


class TopicPlan:
    """One topic compiled against the term table: evaluated on all papers at once."""

    # Tens of thousands are made (one per distinct topic): slots make them faster.
    __slots__ = ("table", "keywords", "excludes", "authors", "categories", "min_upvotes", "query", "keyword_only",
                 "terms", "narrowed", "_matches", "shared", "_entries", "_shown", "counted", "described", "threshold", "_close", "learned",
                 "closeness_only")

    def __init__(self, topic: Topic, table: TermTable) -> None:
        # Each topic of each subscriber gets one (50,000 on the bench): the empty criteria,
        # most of them, are skipped rather than compiled.
        keyword_id = table.keyword_id
        self.table = table
        self.keywords = [(k, keyword_id(k)) for k in topic.keywords]
        self.excludes = [t for k in topic.exclude if (t := keyword_id(k)) is not None] if topic.exclude else []
        self.authors = [(n, a) for n in topic.authors if (a := AuthorName.parse(n))] if topic.authors else []
        self.categories = [c.lower() for c in topic.categories] if topic.categories else []
        self.min_upvotes = topic.min_upvotes
        self.query = parse_query(topic.query) if topic.query else None
        # Keyword topics (most) are evaluated many at once (Matcher.digests): from their terms'
        # postings, narrowed to the papers their categories and excludes allow.
        # A described topic is matched by how close papers are to its words (relevance.py):
        # its keywords then count as a bonus, not as the door.
        self.learned = topic.learned
        self.described = (TopicText(topic.name, topic.description, tuple(topic.keywords))
                          if topic.description or topic.learned is not None else None)
        self.threshold = DESCRIPTION_THRESHOLD - SENSITIVITY_STEP * topic.sensitivity
        self._close: tuple[PaperIndex, np.ndarray] | None = None
        self.keyword_only = (bool(self.keywords) and self.query is None and not self.authors and self.min_upvotes is None
                             and self.described is None)
        self.terms = [t for _, t in self.keywords if t is not None]
        # A described topic of keywords (with excludes and categories): these are evaluated
        # together, a block of subscribers at a time (block.py), as keyword topics are.
        self.closeness_only = (self.described is not None and self.query is None and not self.authors
                               and self.min_upvotes is None)
        self.narrowed = (tuple(self.categories), tuple(self.excludes)) if self.categories or self.excludes else None
        self._matches: tuple[PaperIndex, np.ndarray, np.ndarray] | None = None
        self.shared = False  # set by the matcher once a second subscriber has this topic
        self._entries: tuple[PaperIndex | None, dict[tuple, DigestEntry]] = (None, {})
        self.counted = [t for t, positive in _polarity(self.query) if positive] if self.query is not None else []
        self._shown: Shown | None = None

    def shown(self) -> Shown:
        """What an explanation shows: the keywords and counted query terms (display text, term
        id, TITLE|ABSTRACT bits that count), the authors and the categories. Made when first
        needed: many topics never have a paper to explain (half of them on the bench)."""
        if self._shown is None:
            terms = [(k, t, TITLE | ABSTRACT) for k, t in self.keywords if t is not None]
            authors = [a for _, a in self.authors]
            categories = list(self.categories)
            for term in self.counted:
                if term.field == "author":
                    if author := AuthorName.parse(term.text):
                        authors.append(author)
                elif term.field == "category":
                    categories.append(term.text.lower() + ("*" if term.prefix else ""))
                elif (term_id := self.table.id_of(term.text, term.prefix)) is not None:
                    terms.append((term.text + ("*" if term.prefix else ""), term_id, _FIELD_BITS[term.field]))
            self._shown = (terms, authors, tuple(categories))
        return self._shown

    # -- all papers at once

    def matches(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """`evaluate`, kept (read-only) once a second subscriber has the topic, so everyone who
        shares it shares its evaluation; a topic of one subscriber keeps nothing."""
        if self._matches is not None and self._matches[0] is index:
            return self._matches[1], self._matches[2]
        papers, raw = self.evaluate(index)
        if self.shared:
            papers.flags.writeable = raw.flags.writeable = False
            self._matches = (index, papers, raw)
        return papers, raw

    def entries(self, index: PaperIndex, wanted: list[tuple[int, float, tuple[str, ...]]]) -> tuple[DigestEntry, ...]:
        """The entries of papers under this topic, each wanted as (paper, score, the subscriber's
        other topics it fits): why it is there and the terms it matched. Kept once a second
        subscriber has the topic (the same entries recur in their digests)."""
        if not self.shared:
            return self._made(index, wanted)
        if self._entries[0] is not index:
            self._entries = (index, {})
        known = self._entries[1]
        missing = [w for w in wanted if w not in known]
        known.update(zip(missing, self._made(index, missing)))
        return tuple([known[w] for w in wanted])

    def _made(self, index: PaperIndex, wanted: list[tuple[int, float, tuple[str, ...]]]) -> tuple[DigestEntry, ...]:
        papers, hits = index.papers, index.hits
        terms_shown, shown_authors, shown_categories = self.shown()
        shown_terms = [(text, hits.get(term_id, _NO_HITS), field_bits) for text, term_id, field_bits in terms_shown]
        authors: tuple[str, ...] = ()
        categories: tuple[str, ...] = ()
        close = self.closeness(index) if self.described is not None else None
        made = []
        for i, score, also in wanted:  # hundreds of thousands: loops, not comprehensions (frames)
            paper = papers[i]
            # What the paper matched, as the explanation shows it: terms (display text,
            # TITLE|ABSTRACT bits), authors, categories.
            terms = []
            for text, postings, field_bits in shown_terms:
                bits = postings.get(i, 0) & field_bits
                if bits:
                    terms.append((text, bits))
            if shown_authors:
                authors = _followed(paper, shown_authors)
            if shown_categories:
                categories = _categories_in(tuple(paper.categories), shown_categories)
            why, matched = _explained(tuple(terms), authors, categories, paper.upvotes)
            if close is not None and close[i] >= self.threshold:  # its words alone let it in
                liked = self._liked_like(paper) if self.learned is not None else None
                if liked is None:
                    lead = "close to your description"
                elif liked[1]:
                    lead = f'like your example "{liked[0]}"'
                else:
                    lead = f'like "{liked[0]}" that you liked'
                why = lead + ("; " + why if why else "")
            made.append(_entry(paper, score, why, matched, also))
        return tuple(made)

    def hold_closeness(self, index: PaperIndex, close: np.ndarray) -> None:
        """Keep the closeness computed for a batch of topics (block.py), learned model included."""
        self._close = (index, close)

    def closeness(self, index: PaperIndex) -> np.ndarray:
        """How close every paper is to the topic's own words (0 to about 1; relevance.py), moved
        towards what the reader's ratings taught, as far as they weigh (learned.py)."""
        assert self.described is not None
        if self._close is None or self._close[0] is not index:
            close = index.description_scores([self.described])[0]
            if self.learned is not None:
                close = self.with_learned(close, index.learned_probabilities([self.learned])[0],
                                          index.learned_leanings([self.learned])[0])
            self._close = (index, close)
        return self._close[1]

    def with_learned(self, close: np.ndarray, probabilities: np.ndarray, leaning: np.ndarray) -> np.ndarray:
        """The closeness moved by the learned model (`with_learned`, for this topic alone)."""
        assert self.learned is not None
        return with_learned(close[None], probabilities[None], leaning[None], [self.learned])[0]

    def _liked_like(self, paper: Paper) -> tuple[str, bool] | None:
        """The liked paper this one shares most words with (at least three), its title shortened,
        and whether it is one of the topic's examples."""
        words = set(relevance_terms(paper.title)) | set(relevance_terms(paper.abstract))
        best, shared = None, 2
        for title in self.learned.liked:
            common = len(words & set(relevance_terms(title)))
            if common > shared:
                best, shared = title, common
        if best is None:
            return None
        return (best if len(best) <= 60 else best[:57].rstrip() + "…"), best in self.learned.examples

    def evaluate(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """(the papers that satisfy every criterion, in ascending order, and their raw relevance:
        the weights summed, before saturation). Sums of weights are exact in floating point
        (multiples of 1/4), so their order does not matter."""
        if self.keyword_only:
            return self._keyword_matches(index)
        if self.closeness_only:
            return self._described_matches(index)
        mask, raw = self._evaluate_dense(index)
        papers = mask.nonzero()[0]
        return papers, raw[papers]

    def _keyword_matches(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """`evaluate` for keywords (with excludes and categories) from the terms' postings:
        most topics are these, and each touches a small share of the papers."""
        phrase = self.table.phrase
        found = [p for _, t in self.keywords if (p := index.term_postings(t, t is not None and phrase[t])) is not None]
        if not found:
            return _NO_PAPERS, _NO_WEIGHTS
        if len(found) == 1:
            papers, raw = found[0]
        else:
            summed = np.zeros(index.size)
            for hit, added in found:
                summed[hit] += added  # a term's postings name each paper once
            papers = summed.nonzero()[0]  # not np.flatnonzero: its wrapping costs more than the search
            raw = summed[papers]
        keep = None
        for term_id in self.excludes:
            absent = ~index.term_present(term_id)[papers]
            keep = absent if keep is None else keep & absent
        if self.categories:
            wanted = index.nothing
            for pattern in self.categories:
                wanted = wanted | index.category_mask(pattern)
            keep = wanted[papers] if keep is None else keep & wanted[papers]
            raw = raw + CATEGORY_WEIGHT
        if keep is not None:
            papers, raw = papers[keep], raw[keep]
        return papers, raw

    def _described_matches(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """`evaluate` for a described topic of keywords (with excludes and categories): only the
        papers close enough to be in with the keyword bonus are looked at (a few of them)."""
        close = self.closeness(index)
        papers = (close >= self.threshold - KEYWORD_BONUS).nonzero()[0]
        raw = np.zeros(len(papers))
        phrase = self.table.phrase
        for _, term_id in self.keywords:
            weights = index.term_weights(term_id, None, term_id is not None and phrase[term_id])
            if weights is not None:
                raw += weights[papers]
        near = close[papers] + KEYWORD_BONUS * (raw > 0) >= self.threshold
        for term_id in self.excludes:
            near &= ~index.term_present(term_id)[papers]
        if self.categories:
            wanted = index.nothing
            for pattern in self.categories:
                wanted = wanted | index.category_mask(pattern)
            near &= wanted[papers]
            raw = raw + CATEGORY_WEIGHT
        papers = papers[near]
        return papers, raw[near] + DESCRIPTION_WEIGHT * close[papers]

    def _evaluate_dense(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the papers that satisfy every criterion, the raw relevance of every paper)."""
        raw = np.zeros(index.size)
        mask: np.ndarray | None = None
        by_author: np.ndarray | None = None
        in_category: np.ndarray | None = None
        phrase = self.table.phrase
        if self.keywords:
            for _, term_id in self.keywords:
                weights = index.term_weights(term_id, None, term_id is not None and phrase[term_id])
                if weights is not None:
                    raw += weights
            mask = raw > 0  # any keyword, anywhere
        if self.described is not None:
            close = self.closeness(index)
            near = close + KEYWORD_BONUS * (raw > 0) >= self.threshold
            mask = near  # instead of "any keyword": a keyword alone no longer lets a paper in
            raw += DESCRIPTION_WEIGHT * close
        if self.query is not None:
            leaves: dict[int, np.ndarray] = {}  # by id: a Term's dataclass hash costs more than its look-up
            satisfied = self._truth(self.query, index, leaves)
            mask = satisfied if mask is None else mask & satisfied
            for term in self.counted:
                if term.field == "author":
                    by_author = leaves[id(term)] if by_author is None else by_author | leaves[id(term)]
                elif term.field == "category":
                    in_category = leaves[id(term)] if in_category is None else in_category | leaves[id(term)]
                else:
                    term_id = self.table.id_of(term.text, term.prefix)
                    weights = index.term_weights(term_id, term.field, term_id is not None and phrase[term_id])
                    if weights is not None:
                        raw += weights
        if self.categories:
            wanted = index.nothing
            for pattern in self.categories:
                wanted = wanted | index.category_mask(pattern)
            mask = wanted if mask is None else mask & wanted
            in_category = wanted if in_category is None else in_category | wanted
        if self.authors:
            wanted = index.nothing
            for _, author in self.authors:
                wanted = wanted | index.author_mask(author)
            mask = wanted if mask is None else mask & wanted
            by_author = wanted if by_author is None else by_author | wanted
        if self.min_upvotes is not None:
            enough = index.upvotes >= self.min_upvotes
            mask = enough if mask is None else mask & enough
        assert mask is not None  # a topic always has a criterion (config validation)
        for term_id in self.excludes:
            mask = mask & ~index.term_present(term_id)
        if by_author is not None:
            raw += AUTHOR_WEIGHT * by_author
        if in_category is not None:
            raw += CATEGORY_WEIGHT * in_category
        return mask, raw

    def _truth(self, node: Node, index: PaperIndex, leaves: dict[int, np.ndarray]) -> np.ndarray:
        if isinstance(node, Term):
            leaf = leaves.get(id(node))
            if leaf is None:
                leaf = leaves[id(node)] = self._leaf(node, index)
            return leaf
        if isinstance(node, Not):
            return ~self._truth(node.operand, index, leaves)
        parts = [self._truth(child, index, leaves) for child in node.operands]
        return reduce(operator.and_ if isinstance(node, And) else operator.or_, parts)  # not np.logical_*.reduce: it stacks them first

    def _leaf(self, term: Term, index: PaperIndex) -> np.ndarray:
        if term.field == "author":
            wanted = AuthorName.parse(term.text)
            return index.author_mask(wanted) if wanted else index.nothing
        if term.field == "category":
            return index.category_mask(term.text.lower() + ("*" if term.prefix else ""))
        return index.term_present(self.table.id_of(term.text, term.prefix), term.field)



@lru_cache(maxsize=65_536)  # the same few terms and upvote counts recur across topics and papers
def _explained(terms: tuple[tuple[str, int], ...], authors: tuple[str, ...], categories: tuple[str, ...],
               upvotes: int | None) -> tuple[str, tuple[str, ...]]:
    """(`explain`, the terms matched)."""
    return explain(terms, authors, categories, upvotes), tuple([text for text, _ in terms])


_entry = DigestEntry.made


def _followed(paper: Paper, authors: list[AuthorName]) -> tuple[str, ...]:
    """The paper's authors among `authors`, as the paper writes them."""
    return tuple([n for n in paper.authors if (a := AuthorName.parse(n)) and any(a.same_person(w) for w in authors)])


@lru_cache(maxsize=65_536)  # few distinct category lists, and patterns
def _categories_in(categories: tuple[str, ...], patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple([c for c in categories if any(_category_ok(c.lower(), p) for p in patterns)])


def with_learned(close: np.ndarray, probabilities: np.ndarray, leaning: np.ndarray,
                 models: Sequence[Learned]) -> np.ndarray:
    """Each row's closeness moved by its learned model's `probabilities` of the same papers,
    by up to the model's weight, measured from the pool's typical paper: lifted towards the one
    most like the reader's positives (the full weight), and, when the reader said "not for me",
    lowered towards the one least like them. Not from p = 1/2: trained against many unrated
    papers, a model puts nearly every paper under one half, the relevant ones unlike its few
    positives too, and would lower them all. Then moved by the paper's `leaning` in meaning:
    nearer the papers liked than those not for the reader lifts it, nearer those lowers it.
    All rows at once (a block's models: one median over the rows, not one per model)."""
    if not probabilities.shape[-1]:
        return close
    weight = np.array([[m.weight] for m in models])
    leaning_weight = np.array([[m.leaning_weight] for m in models])
    disliked = np.array([[m.disliked > 0] for m in models])
    typical = np.median(probabilities, axis=1, keepdims=True)
    best, worst = probabilities.max(axis=1, keepdims=True), probabilities.min(axis=1, keepdims=True)
    move = np.clip((probabilities - typical) / np.maximum(best - typical, 1e-9), 0.0, 1.0)
    move -= disliked * np.clip((typical - probabilities) / np.maximum(typical - worst, 1e-9), 0.0, 1.0)
    return close + leaning_weight * leaning + weight * move


def relevance(raw: np.ndarray) -> np.ndarray:
    """Relevance from the raw weights summed (`evaluate`): saturating, so more terms always
    help but never without bound. Raw weights are multiples of 1/4 (weights.py), so it is
    looked up; should a tuned weight leave the quarters, it is computed instead."""
    quarters = raw * 4
    index = quarters.astype(np.intp)
    if (index != quarters).any():
        return _saturated(raw)
    return _RELEVANCE_BY_QUARTERS.take(index, mode="clip")


def _saturated(raw: np.ndarray) -> np.ndarray:
    return RELEVANCE * (1.0 - np.exp(-raw / SATURATION))


# From 128 on the relevance is exactly RELEVANCE (e^(-128/2.5) < 2^-54), so `take(mode="clip")`
# serves any larger sum.
_RELEVANCE_BY_QUARTERS = _saturated(np.arange(4 * 128 + 1) / 4)
_RELEVANCE_BY_QUARTERS.flags.writeable = False
_NO_HITS: dict[int, int] = {}
_NO_PAPERS = np.empty(0, dtype=np.intp)
_NO_WEIGHTS = np.empty(0)
_NO_PAPERS.flags.writeable = _NO_WEIGHTS.flags.writeable = False


def _topic_key(topic: Topic) -> tuple:
    """What a plan depends on: a topic's criteria; its name only when it is described (its
    words then count), so undescribed topics named differently share one plan."""
    described = ((topic.name, topic.description, topic.sensitivity, topic.learned)
                 if topic.description or topic.learned is not None else None)
    return (tuple(topic.keywords), topic.query, tuple(topic.exclude), tuple(topic.categories),
            tuple(topic.authors), topic.min_upvotes, described)
