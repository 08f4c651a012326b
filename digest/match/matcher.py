"""Match papers to every subscriber's topics, group them, rank them, explain them.

All topics of all subscribers are compiled into one term table, and each paper is scanned
once against it (a dictionary look-up per word, not a search per keyword), giving postings
term → papers. A topic is then a few operations on arrays as long as the list of new papers
(a mask of the papers it admits and their relevance), and a subscriber's digest is the best
topic per paper and a sort of the few hundred papers that matched. Digests are made one
subscriber at a time: memory does not grow with the number of subscribers.

Pure: no I/O, and the clock is an argument.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from ..config import Defaults, Subscriber, Topic
from ..models import Digest, DigestEntry, Paper, Section
from ..query import And, Node, Not, Term, parse_query, terms
from .normalise import joined, raw_words, term_key, words_with_compounds

TITLE, ABSTRACT = 1, 2
TRENDING = "Trending"

# Relevance: a title hit weighs three abstract hits (a term the abstract repeats weighs up to
# 2.5), a phrase one and a half words, a followed author three, a category half; the sum saturates (1 - e^(-sum/2.5)) so that more distinct terms
# always help but never without bound. Score = 0.7 relevance + 0.2 trending + 0.1 freshness.
TITLE_WEIGHT, ABSTRACT_WEIGHT, REPEAT_WEIGHT = 3.0, 1.0, 0.5  # a term said again in the abstract: +0.5, up to 4 times
_ONE_MORE, _COUNT_CAP = 4, 63 * 4  # postings keep TITLE|ABSTRACT in bits 0-1, abstract mentions above (uint8)
_FIELD_BITS = {None: TITLE | ABSTRACT, "title": TITLE, "abstract": ABSTRACT}
PHRASE_WEIGHT, AUTHOR_WEIGHT, CATEGORY_WEIGHT, SATURATION = 1.5, 3.0, 0.5, 2.5
RELEVANCE, TREND, FRESHNESS = 0.70, 0.20, 0.10
TREND_FULL_AT, FRESH_HOURS = 200, 72.0


# ---------------------------------------------------------------- terms


@dataclass
class TermTable:
    """Every distinct keyword, phrase and wildcard of every topic, each with one id."""

    ids: dict[tuple[tuple[str, ...], bool], int] = field(default_factory=dict)
    by_first: dict[str, list[tuple[tuple[str, ...], int]]] = field(default_factory=dict)
    prefixes: dict[str, list[int]] = field(default_factory=dict)
    longest_prefix: int = 0
    phrase: list[bool] = field(default_factory=list)  # term id -> several words
    _lookup: dict[tuple[str, bool], int | None] = field(default_factory=dict)

    def add(self, text: str, prefix: bool = False) -> int | None:
        known = self._lookup.get((text, prefix), -1)
        if known != -1 and known is not None:
            return known
        key = self.key(text, prefix)
        if key is None:
            return None
        if key in self.ids:
            self._lookup[(text, prefix)] = self.ids[key]
            return self.ids[key]
        term_id = self.ids[key] = self._lookup[(text, prefix)] = len(self.ids)
        sequence, is_prefix = key
        self.phrase.append(len(sequence) > 1)
        if is_prefix:
            self.prefixes.setdefault(sequence[0], []).append(term_id)
            self.longest_prefix = max(self.longest_prefix, len(sequence[0]))
        else:
            self.by_first.setdefault(sequence[0], []).append((sequence, term_id))
            if len(sequence) > 1:  # "KV cache" also matches "KVCache" written as one word
                self.by_first.setdefault(joined(text), []).append(((sequence[0],), term_id))
        return term_id

    def id_of(self, text: str, prefix: bool = False) -> int | None:
        found = self._lookup.get((text, prefix), -1)
        if found == -1:
            key = self.key(text, prefix)
            found = self._lookup[(text, prefix)] = None if key is None else self.ids.get(key)
        return found

    key = staticmethod(term_key)


@lru_cache(maxsize=65_536)
def _parsed(query: str) -> Node:
    return parse_query(query)


def _topic_terms(topic: Topic) -> Iterator[tuple[str, bool]]:
    for keyword in (*topic.keywords, *topic.exclude):
        yield keyword.rstrip("*"), keyword.endswith("*")
    if topic.query:
        for term in terms(_parsed(topic.query)):
            if term.field in (None, "title", "abstract"):
                yield term.text, term.prefix


def compile_terms(subscribers: Iterable[Subscriber]) -> TermTable:
    """One table for the topics of all subscribers (distinct terms only)."""
    table = TermTable()
    for subscriber in subscribers:
        for topic in subscriber.topics:
            for text, prefix in _topic_terms(topic):
                table.add(text, prefix)
    return table


# ---------------------------------------------------------------- papers


@dataclass(frozen=True)
class AuthorName:
    last: str
    initial: str
    first: str | None  # None when only an initial is known

    @classmethod
    def parse(cls, name: str) -> AuthorName | None:
        if "," in name:  # "Dao, Tri"
            last_part, _, first_part = name.partition(",")
            name = f"{first_part} {last_part}"
        parts = raw_words(name)
        if not parts:
            return None
        first = parts[0] if len(parts) > 1 else ""
        return cls(parts[-1], first[:1], first if len(first) > 1 else None)

    def same_person(self, other: AuthorName) -> bool:
        """"Tri Dao" = "T. Dao" = "Dao, Tri"; "Tri Dao" ≠ "Tom Dao"."""
        if self.last != other.last or self.initial != other.initial:
            return False
        return self.first is None or other.first is None or self.first == other.first


def _category_ok(category: str, pattern: str) -> bool:
    """`pattern` is lower-case: ``cs.cl``, or a whole archive ``cs.*`` / ``cs``."""
    if pattern.endswith("*") or "." not in pattern:
        return category.startswith(pattern.rstrip("*").rstrip(".") + ".")
    return category == pattern


class PaperIndex:
    """The papers scanned once against a term table: postings, author and category indexes,
    and per-paper arrays (upvotes, first seen, id order) for ranking."""

    def __init__(self, papers: Sequence[Paper], table: TermTable) -> None:
        self.papers = list(papers)
        self.size = size = len(self.papers)
        self.position = {p.id: i for i, p in enumerate(self.papers)}
        self.hits: dict[int, dict[int, int]] = {}  # term id -> paper index -> TITLE|ABSTRACT bits
        self.by_category: dict[str, list[int]] = {}
        self.by_author: dict[str, list[tuple[int, AuthorName]]] = {}
        for index, paper in enumerate(self.papers):
            self._scan(index, paper, table)
        self.upvotes = np.array([p.upvotes or 0 for p in self.papers], dtype=np.float64)
        self.seen = np.array([p.first_seen_at.timestamp() if p.first_seen_at else np.nan for p in self.papers])
        self.id_rank = np.empty(size, dtype=np.int64)
        self.id_rank[sorted(range(size), key=lambda i: self.papers[i].id)] = np.arange(size)
        self.by_upvotes = sorted((i for i in range(size) if self.papers[i].upvotes),
                                 key=lambda i: (-self.upvotes[i], self.papers[i].id))
        self.nothing = np.zeros(size, dtype=bool)
        self.nothing.flags.writeable = False
        # Dense arrays are made on demand and kept within a fixed budget (about 64 MiB, emptied
        # when full), never per subscriber.
        self._capacity = max(256, (64 << 20) // max(1, 8 * size))
        self._dense: dict[object, np.ndarray] = {}

    def _scan(self, index: int, paper: Paper, table: TermTable) -> None:
        hits, by_first, prefixes, longest = self.hits, table.by_first, table.prefixes, table.longest_prefix

        def hit(term_id: int, bit: int) -> None:
            postings = hits.setdefault(term_id, {})
            value = postings.get(index, 0) | bit
            if bit == ABSTRACT and value < _COUNT_CAP:
                value += _ONE_MORE  # how often the abstract says it, in the bits above
            postings[index] = value

        for bit, text in ((TITLE, paper.title), (ABSTRACT, paper.abstract)):
            sequence, joined = words_with_compounds(text)
            size = len(sequence)
            for position, word in enumerate(sequence):
                for phrase, term_id in by_first.get(word, ()):
                    length = len(phrase)
                    if length == 1 or (position + length <= size and tuple(sequence[position:position + length]) == phrase):
                        hit(term_id, bit)
            for word in joined:
                for phrase, term_id in by_first.get(word, ()):
                    if len(phrase) == 1:
                        hit(term_id, bit)
            if prefixes:
                for word in set(raw_words(text)):
                    for length in range(3, min(len(word), longest) + 1):
                        for term_id in prefixes.get(word[:length], ()):
                            hit(term_id, bit)
        for category in paper.categories:
            self.by_category.setdefault(category.lower(), []).append(index)
        for name in paper.authors:
            author = AuthorName.parse(name)
            if author:
                self.by_author.setdefault(author.last, []).append((index, author))

    def _cached(self, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
        dense = self._dense.get(key)
        if dense is None:
            if len(self._dense) >= self._capacity:
                self._dense.clear()
            dense = self._dense[key] = make()
            dense.flags.writeable = False
        return dense

    def term_bits(self, term_id: int | None) -> np.ndarray | None:
        """TITLE|ABSTRACT bits of one term in every paper; None when it occurs in none."""
        postings = self.hits.get(term_id) if term_id is not None else None
        if not postings:
            return None

        def make() -> np.ndarray:
            dense = np.zeros(self.size, dtype=np.uint8)
            dense[list(postings)] = list(postings.values())
            return dense

        return self._cached(("term", term_id), make)

    def term_weights(self, term_id: int | None, field: str | None, phrase: bool) -> np.ndarray | None:
        """What one term adds to the relevance of every paper (None when it occurs in none)."""
        bits = self.term_bits(term_id)
        if bits is None:
            return None
        factor = PHRASE_WEIGHT if phrase else 1.0

        def make() -> np.ndarray:
            title = (bits & TITLE) != 0 if field in (None, "title") else self.nothing
            mentions = np.minimum(bits >> 2, 4).astype(np.float64) if field in (None, "abstract") else 0.0
            abstract = np.where(mentions > 0, ABSTRACT_WEIGHT + REPEAT_WEIGHT * (mentions - 1), 0.0)
            return np.maximum(np.where(title, TITLE_WEIGHT, 0.0), abstract) * factor

        return self._cached(("weights", term_id, field), make)

    def term_present(self, term_id: int | None, field: str | None = None) -> np.ndarray:
        """Papers in which the term occurs (in the field, if given)."""
        bits = self.term_bits(term_id)
        if bits is None:
            return self.nothing
        return self._cached(("present", term_id, field), lambda: (bits & _FIELD_BITS[field]) != 0)

    def rank_keys(self, scores: np.ndarray, which: np.ndarray) -> np.ndarray:
        """One int64 per paper that sorts like (score desc, upvotes desc, id asc), for scores
        already rounded to 4 decimals: argpartition can then pick the best few."""
        score = np.rint(scores[which] * 10_000).astype(np.int64)  # 0 .. 10,000
        upvotes = np.minimum(self.upvotes[which], (1 << 20) - 1).astype(np.int64)
        return ((20_000 - score) << 41) | (((1 << 20) - 1 - upvotes) << 21) | self.id_rank[which]

    def category_mask(self, pattern: str) -> np.ndarray:
        def make() -> np.ndarray:
            mask = np.zeros(self.size, dtype=bool)
            for category, papers in self.by_category.items():
                if _category_ok(category, pattern):
                    mask[papers] = True
            return mask

        return self._cached(("category", pattern), make)

    def author_mask(self, wanted: AuthorName) -> np.ndarray:
        def make() -> np.ndarray:
            mask = np.zeros(self.size, dtype=bool)
            mask[[i for i, a in self.by_author.get(wanted.last, ()) if a.same_person(wanted)]] = True
            return mask

        return self._cached(("author", wanted), make)


# ---------------------------------------------------------------- topics


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


@dataclass
class Found:
    """How one paper satisfied one topic: what the explanation says."""

    terms: list[tuple[str, int]] = field(default_factory=list)  # display text, TITLE|ABSTRACT bits
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def _polarity(node: Node, positive: bool = True) -> Iterator[tuple[Term, bool]]:
    """Each term of a query with whether it counts for the paper (not under an odd number of NOTs)."""
    if isinstance(node, Term):
        yield node, positive
    elif isinstance(node, Not):
        yield from _polarity(node.operand, not positive)
    else:
        for child in node.operands:
            yield from _polarity(child, positive)


class TopicPlan:
    """One topic compiled against the term table: evaluated on all papers at once."""

    def __init__(self, topic: Topic, table: TermTable) -> None:
        self.name = topic.name
        self.keywords = [(k, table.id_of(k.rstrip("*"), k.endswith("*"))) for k in topic.keywords]
        self.excludes = [t for k in topic.exclude if (t := table.id_of(k.rstrip("*"), k.endswith("*"))) is not None]
        self.authors = [(n, a) for n in topic.authors if (a := AuthorName.parse(n))]
        self.categories = [c.lower() for c in topic.categories]
        self.min_upvotes = topic.min_upvotes
        self.query = _parsed(topic.query) if topic.query else None
        self.table = table
        self.counted = [t for t, positive in _polarity(self.query) if positive] if self.query else []
        # What an explanation shows: the keywords and counted query terms, authors and categories.
        self.shown_terms = [(k, t, TITLE | ABSTRACT) for k, t in self.keywords if t is not None]
        self.shown_authors = [a for _, a in self.authors]
        self.shown_categories = list(self.categories)
        for term in self.counted:
            if term.field == "author":
                if author := AuthorName.parse(term.text):
                    self.shown_authors.append(author)
            elif term.field == "category":
                self.shown_categories.append(term.text.lower() + ("*" if term.prefix else ""))
            elif (term_id := table.id_of(term.text, term.prefix)) is not None:
                self.shown_terms.append((term.text + ("*" if term.prefix else ""), term_id, _FIELD_BITS[term.field]))

    # -- all papers at once

    def evaluate(self, index: PaperIndex) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the papers that satisfy every criterion, their relevance 0..1)."""
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
        if self.query is not None:
            leaves: dict[Term, np.ndarray] = {}
            satisfied = self._truth(self.query, index, leaves)
            mask = satisfied if mask is None else mask & satisfied
            for term in self.counted:
                if term.field == "author":
                    by_author = leaves[term] if by_author is None else by_author | leaves[term]
                elif term.field == "category":
                    in_category = leaves[term] if in_category is None else in_category | leaves[term]
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
        return mask, 1.0 - np.exp(-raw / SATURATION)

    def _truth(self, node: Node, index: PaperIndex, leaves: dict[Term, np.ndarray]) -> np.ndarray:
        if isinstance(node, Term):
            if node not in leaves:
                leaves[node] = self._leaf(node, index)
            return leaves[node]
        if isinstance(node, Not):
            return ~self._truth(node.operand, index, leaves)
        parts = [self._truth(child, index, leaves) for child in node.operands]
        combine = np.logical_and if isinstance(node, And) else np.logical_or
        return combine.reduce(parts)

    def _leaf(self, term: Term, index: PaperIndex) -> np.ndarray:
        if term.field == "author":
            wanted = AuthorName.parse(term.text)
            return index.author_mask(wanted) if wanted else index.nothing
        if term.field == "category":
            return index.category_mask(term.text.lower() + ("*" if term.prefix else ""))
        return index.term_present(self.table.id_of(term.text, term.prefix), term.field)

    # -- one paper, for its explanation

    def found(self, index: PaperIndex, i: int) -> Found:
        paper, hits = index.papers[i], index.hits
        found = Found()
        found.terms = [(text, bits) for text, term_id, field_bits in self.shown_terms
                       if (bits := hits.get(term_id, _NO_HITS).get(i, 0) & field_bits)]
        if self.shown_authors:
            found.authors = [n for n in paper.authors
                             if (a := AuthorName.parse(n)) and any(a.same_person(w) for w in self.shown_authors)]
        if self.shown_categories:
            found.categories = [c for c in paper.categories
                                if any(_category_ok(c.lower(), p) for p in self.shown_categories)]
        return found


_NO_HITS: dict[int, int] = {}


def _topic_key(topic: Topic) -> tuple:
    return (topic.name, tuple(topic.keywords), topic.query, tuple(topic.exclude), tuple(topic.categories),
            tuple(topic.authors), topic.min_upvotes)


# ---------------------------------------------------------------- explaining


def explain(found: Found, paper: Paper) -> str:
    parts: list[str] = []
    distinct = list(dict.fromkeys(found.terms))
    ordered = [t for t in distinct if t[1] & TITLE] + [t for t in distinct if not t[1] & TITLE]
    shown = [f'"{text}" in {"title" if bits & TITLE else "abstract"}' for text, bits in ordered[:3]]
    if shown:
        parts.append("matched " + ", ".join(shown) + (f" (+{len(ordered) - 3} more)" if len(ordered) > 3 else ""))
    if found.authors:
        parts.append("by " + ", ".join(dict.fromkeys(found.authors)))
    if found.categories and not shown and not found.authors:
        parts.append("in " + ", ".join(dict.fromkeys(found.categories)))
    if paper.upvotes:
        parts.append(f"{paper.upvotes} upvote{'s' * (paper.upvotes != 1)}")
    return "; ".join(parts)


# ---------------------------------------------------------------- digests


class Matcher:
    """Topics of all subscribers compiled once; papers scanned once; digests made one by one."""

    def __init__(self, subscribers: Sequence[Subscriber], defaults: Defaults, papers: Sequence[Paper]) -> None:
        self.defaults = defaults
        self.table = compile_terms(subscribers)
        self.index = PaperIndex(papers, self.table)
        self._plans: OrderedDict[tuple, TopicPlan] = OrderedDict()
        self._base: tuple[datetime, np.ndarray] | None = None
        self._windows: OrderedDict[datetime, np.ndarray] = OrderedDict()

    def plan(self, topic: Topic) -> TopicPlan:
        key = _topic_key(topic)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = TopicPlan(topic, self.table)
            if len(self._plans) > 4096:
                self._plans.popitem(last=False)
        return plan

    def base_scores(self, now: datetime) -> np.ndarray:
        """Trending and freshness part of every paper's score at `now` (the same for everyone)."""
        if self._base is None or self._base[0] != now:
            index = self.index
            trend = np.minimum(1.0, np.log1p(index.upvotes) / np.log1p(TREND_FULL_AT))
            age_hours = np.maximum(0.0, np.nan_to_num(now.timestamp() - index.seen, nan=0.0) / 3600)
            self._base = (now, TREND * trend + FRESHNESS * np.exp(-age_hours / FRESH_HOURS))
        return self._base[1]

    def eligible(self, since: datetime, delivered: Iterable[str]) -> np.ndarray:
        """Papers first seen at or after `since` and never delivered."""
        window = self._windows.get(since)
        if window is None:
            seen = self.index.seen
            window = self._windows[since] = np.isnan(seen) | (seen >= since.timestamp())
            if len(self._windows) > 16:
                self._windows.popitem(last=False)
        position = self.index.position
        gone = [position[p] for p in delivered if p in position]
        if gone:
            window = window.copy()
            window[gone] = False
        return window

    def digest(
        self,
        subscriber: Subscriber,
        now: datetime,
        since: datetime | None = None,
        delivered: Iterable[str] = (),
    ) -> Digest:
        settings = Settings.of(subscriber, self.defaults)
        since = since if since is not None else now - settings.lookback
        index, papers = self.index, self.index.papers
        eligible = self.eligible(since, delivered)
        base = self.base_scores(now)
        plans = [self.plan(t) for t in subscriber.topics]

        # Each paper under the topic it matches best (ties: the subscriber's order, as only a
        # strictly better score moves it).
        best = np.full(index.size, -np.inf)
        best_topic = np.zeros(index.size, dtype=np.intp)
        in_topic = []
        for row, plan in enumerate(plans):
            mask, relevance = plan.evaluate(index)
            mask = mask & eligible
            in_topic.append(mask)
            value = RELEVANCE * relevance + base
            better = mask & (value > best)
            np.copyto(best, value, where=better)
            best_topic[better] = row
        matched = np.flatnonzero(best > -np.inf)
        best[matched] = np.round(best[matched], 4)

        trending: list[int] = []
        wanted = min(settings.trending, settings.max_papers)  # the section counts within max_papers
        if wanted:
            for i in index.by_upvotes:
                if len(trending) == wanted:
                    break
                if eligible[i] and best[i] == -np.inf:
                    trending.append(i)

        # Rank (score, then upvotes, then id: deterministic) and keep within the limits,
        # dropping the lowest ranked first.
        budget = max(0, settings.max_papers - len(trending))
        keys = index.rank_keys(best, matched)
        if settings.max_per_topic is None:
            if len(matched) > budget:  # only the best `budget` need sorting
                top = np.argpartition(keys, budget - 1)[:budget] if budget else np.empty(0, dtype=np.intp)
                chosen = matched[top[np.argsort(keys[top])]]
            else:
                chosen = matched[np.argsort(keys)]
        else:
            order = matched[np.argsort(keys)]
            taken = [0] * len(plans)
            picked = []
            for i, row in zip(order.tolist(), best_topic[order].tolist()):
                if len(picked) == budget:
                    break
                if taken[row] < settings.max_per_topic:
                    taken[row] += 1
                    picked.append(i)
            chosen = np.array(picked, dtype=np.intp)
        per_topic = np.bincount(best_topic[matched], minlength=len(plans)).tolist()

        kept: list[list[DigestEntry]] = [[] for _ in plans]
        names = [plan.name for plan in plans]
        in_topics = np.array([m[chosen] for m in in_topic]).T.tolist() if plans else [[]] * len(chosen)
        for i, row, value, hits in zip(chosen.tolist(), best_topic[chosen].tolist(), best[chosen].tolist(), in_topics):
            paper, found = papers[i], plans[row].found(index, i)
            also = tuple(name for o, name in enumerate(names) if hits[o] and o != row) if sum(hits) > 1 else ()
            kept[row].append(DigestEntry(paper, value, explain(found, paper), tuple(t for t, _ in found.terms), also))
        sections = [Section(plan.name, tuple(kept[row]), per_topic[row] - len(kept[row]))
                    for row, plan in enumerate(plans) if kept[row]]
        if trending:
            sections.append(Section(TRENDING, tuple(
                DigestEntry(papers[i], round(float(base[i]), 4), f"trending: {papers[i].upvotes} upvotes on Hugging Face")
                for i in trending), trending=True))
        omitted = len(matched) - len(chosen)
        return Digest(subscriber.email, subscriber.name, now, since, tuple(sections), omitted)

    def digests(
        self,
        subscribers: Iterable[Subscriber],
        now: datetime,
        window: Callable[[Subscriber], tuple[datetime | None, Iterable[str]]] | None = None,
    ) -> Iterator[Digest]:
        """Digests for many subscribers, one at a time (nothing kept between them)."""
        # The configuration, the papers and the index outlive the batch: keep the cycle
        # collector from walking them again every few thousand new objects (~10% of the time).
        gc.freeze()
        try:
            for subscriber in subscribers:
                since, delivered = window(subscriber) if window else (None, ())
                yield self.digest(subscriber, now, since, delivered)
        finally:
            gc.unfreeze()
