"""Match papers to every subscriber's topics, group them, rank them, explain them.

All topics of all subscribers are compiled into one term table; each paper is scanned once
against it (a dictionary look-up per word, not a search per keyword), giving postings
term → papers. A subscriber's digest is then a few set operations on those postings, made
one subscriber at a time: memory does not grow with the number of subscribers.

Pure: no I/O, and the clock is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import Config, Defaults, Subscriber, Topic
from .models import Digest, DigestEntry, Paper, Section
from .normalise import raw_words, stem, words, words_with_compounds
from .query import And, Node, Not, Term, parse_query, positive_terms

TITLE, ABSTRACT = 1, 2
TRENDING = "Trending"


# ---------------------------------------------------------------- terms


@dataclass
class TermTable:
    """Every distinct keyword, phrase and wildcard of every topic, each with one id."""

    ids: dict[tuple[tuple[str, ...], bool], int] = field(default_factory=dict)
    by_first: dict[str, list[tuple[tuple[str, ...], int]]] = field(default_factory=dict)
    prefixes: dict[str, list[int]] = field(default_factory=dict)
    longest_prefix: int = 0

    def add(self, text: str, prefix: bool = False) -> int | None:
        key = self.key(text, prefix)
        if key is None:
            return None
        if key in self.ids:
            return self.ids[key]
        term_id = self.ids[key] = len(self.ids)
        sequence, is_prefix = key
        if is_prefix:
            self.prefixes.setdefault(sequence[0], []).append(term_id)
            self.longest_prefix = max(self.longest_prefix, len(sequence[0]))
        else:
            self.by_first.setdefault(sequence[0], []).append((sequence, term_id))
            if len(sequence) > 1:  # "KV cache" also matches "KVCache" written as one word
                self.by_first.setdefault(stem("".join(raw_words(text))), []).append(((sequence[0],), term_id))
        return term_id

    def id_of(self, text: str, prefix: bool = False) -> int | None:
        key = self.key(text, prefix)
        return None if key is None else self.ids.get(key)

    @staticmethod
    def key(text: str, prefix: bool) -> tuple[tuple[str, ...], bool] | None:
        if prefix:
            raw = raw_words(text)
            if len(raw) != 1:
                return None
            return (raw[0],), True
        sequence = tuple(words(text))
        return (sequence, False) if sequence else None


def _topic_terms(topic: Topic) -> Iterator[tuple[str, bool]]:
    for keyword in (*topic.keywords, *topic.exclude):
        yield keyword.rstrip("*"), keyword.endswith("*")
    if topic.query:
        for term in _query_terms(topic.query):
            if term.field in (None, "title", "abstract"):
                yield term.text, term.prefix


def _query_terms(query: str) -> list[Term]:
    from .query import terms

    return terms(parse_query(query))


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
        """"Tri Dao" = "T. Dao" = "Tri Dao"; "Tri Dao" ≠ "Tom Dao"."""
        if self.last != other.last or self.initial != other.initial:
            return False
        return self.first is None or other.first is None or self.first == other.first


@dataclass
class PaperIndex:
    """The papers scanned once against a term table: postings, and category and author indexes."""

    papers: list[Paper]
    hits: dict[int, dict[int, int]]  # term id -> paper index -> TITLE|ABSTRACT bits
    by_category: dict[str, list[int]]
    by_author: dict[str, list[tuple[int, AuthorName]]]


def scan_papers(papers: Sequence[Paper], table: TermTable) -> PaperIndex:
    hits: dict[int, dict[int, int]] = {}
    by_category: dict[str, list[int]] = {}
    by_author: dict[str, list[tuple[int, AuthorName]]] = {}
    by_first, prefixes, longest = table.by_first, table.prefixes, table.longest_prefix
    for index, paper in enumerate(papers):
        for bit, text in ((TITLE, paper.title), (ABSTRACT, paper.abstract)):
            sequence, joined = words_with_compounds(text)
            size = len(sequence)
            for position, word in enumerate(sequence):
                for phrase, term_id in by_first.get(word, ()):
                    length = len(phrase)
                    if length == 1 or (position + length <= size and tuple(sequence[position:position + length]) == phrase):
                        postings = hits.setdefault(term_id, {})
                        postings[index] = postings.get(index, 0) | bit
            for word in joined:
                for phrase, term_id in by_first.get(word, ()):
                    if len(phrase) == 1:
                        postings = hits.setdefault(term_id, {})
                        postings[index] = postings.get(index, 0) | bit
            if prefixes:
                for word in set(raw_words(text)):
                    for length in range(3, min(len(word), longest) + 1):
                        for term_id in prefixes.get(word[:length], ()):
                            postings = hits.setdefault(term_id, {})
                            postings[index] = postings.get(index, 0) | bit
        for category in paper.categories:
            by_category.setdefault(category.lower(), []).append(index)
        for name in paper.authors:
            author = AuthorName.parse(name)
            if author:
                by_author.setdefault(author.last, []).append((index, author))
    return PaperIndex(list(papers), hits, by_category, by_author)


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
class _Match:
    """How one paper satisfied one topic."""

    terms: list[tuple[str, int]] = field(default_factory=list)  # display text, field bits
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


class _CompiledTopic:
    def __init__(self, topic: Topic, order: int, table: TermTable, index: PaperIndex) -> None:
        self.name, self.order, self.topic, self.index = topic.name, order, topic, index
        self.keywords = [(k, table.id_of(k.rstrip("*"), k.endswith("*"))) for k in topic.keywords]
        self.excludes = [table.id_of(k.rstrip("*"), k.endswith("*")) for k in topic.exclude]
        self.authors = [a for name in topic.authors if (a := AuthorName.parse(name))]
        self.author_names = {id(a): n for n, a in zip(topic.authors, self.authors)}
        self.categories = [c.lower() for c in topic.categories]
        self.query = parse_query(topic.query) if topic.query else None
        self.table = table

    # candidates: papers that can possibly match, from the postings
    def candidates(self) -> Iterable[int]:
        index = self.index
        if self.keywords:
            return _union(index.hits.get(t, {}) for _, t in self.keywords if t is not None)
        if self.query is not None:
            needed = positive_terms(self.query)
            if needed is not None:
                return _union(self._postings(term) for term in needed)
        if self.categories:
            return _union(self._category_papers(c) for c in self.categories)
        if self.authors:
            return _union([i for i, a in index.by_author.get(f.last, ()) if a.same_person(f)] for f in self.authors)
        return range(len(index.papers))

    def _postings(self, term: Term) -> Iterable[int]:
        if term.field == "author":
            wanted = AuthorName.parse(term.text)
            return [i for i, a in self.index.by_author.get(wanted.last, ()) if a.same_person(wanted)] if wanted else []
        if term.field == "category":
            return self._category_papers(term.text.lower() + ("*" if term.prefix else ""))
        term_id = self.table.id_of(term.text, term.prefix)
        return self.index.hits.get(term_id, {}) if term_id is not None else ()

    def _category_papers(self, pattern: str) -> list[int]:
        if pattern.endswith("*") or "." not in pattern:
            archive = pattern.rstrip("*").rstrip(".") + "."
            return [i for cat, papers in self.index.by_category.items() if cat.startswith(archive) for i in papers]
        return self.index.by_category.get(pattern, [])

    def bits(self, term_id: int | None, paper: int) -> int:
        return self.index.hits.get(term_id, {}).get(paper, 0) if term_id is not None else 0

    def match(self, i: int) -> _Match | None:
        """How paper i satisfies every criterion of the topic, or None."""
        paper = self.index.papers[i]
        found = _Match()
        if any(self.bits(t, i) for t in self.excludes):
            return None
        if self.keywords:
            found.terms = [(k, b) for k, t in self.keywords if (b := self.bits(t, i))]
            if not found.terms:
                return None
        if self.query is not None and not self._eval(self.query, i, found, positive=True):
            return None
        if self.categories:
            mine = [c for c in paper.categories if self._category_ok(c.lower(), self.categories)]
            if not mine:
                return None
            found.categories = mine
        if self.authors:
            names = [n for n in paper.authors
                     if (a := AuthorName.parse(n)) and any(a.same_person(f) for f in self.authors)]
            if not names:
                return None
            found.authors = names
        minimum = self.topic.min_upvotes
        if minimum is not None and (paper.upvotes or 0) < minimum:
            return None
        return found

    @staticmethod
    def _category_ok(category: str, patterns: list[str]) -> bool:
        for pattern in patterns:
            if pattern.endswith("*") or "." not in pattern:
                if category.startswith(pattern.rstrip("*").rstrip(".") + "."):
                    return True
            elif category == pattern:
                return True
        return False

    def _eval(self, node: Node, i: int, found: _Match, positive: bool) -> bool:
        if isinstance(node, Term):
            paper = self.index.papers[i]
            if node.field == "author":
                wanted = AuthorName.parse(node.text)
                names = [n for n in paper.authors if wanted and (a := AuthorName.parse(n)) and a.same_person(wanted)]
                if names and positive:
                    found.authors += names
                return bool(names)
            if node.field == "category":
                pattern = node.text.lower() + ("*" if node.prefix else "")
                cats = [c for c in paper.categories if self._category_ok(c.lower(), [pattern])]
                if cats and positive:
                    found.categories += cats
                return bool(cats)
            bits = self.bits(self.table.id_of(node.text, node.prefix), i)
            if node.field == "title":
                bits &= TITLE
            elif node.field == "abstract":
                bits &= ABSTRACT
            if bits and positive:
                found.terms.append((node.text + ("*" if node.prefix else ""), bits))
            return bool(bits)
        if isinstance(node, Not):
            return not self._eval(node.operand, i, found, not positive)
        if isinstance(node, And):
            return all(self._eval(child, i, found, positive) for child in node.operands)
        results = [self._eval(child, i, found, positive) for child in node.operands]  # Or: collect all hits
        return any(results)


def _union(postings: Iterable[Iterable[int]]) -> set[int]:
    out: set[int] = set()
    for p in postings:
        out.update(p)
    return out


# ---------------------------------------------------------------- ranking and explaining


def relevance(found: _Match) -> float:
    """0..1: title over abstract, phrases over words, more distinct terms, followed authors."""
    raw = 0.0
    for text, bits in found.terms:
        raw += (3.0 if bits & TITLE else 1.0) * (1.5 if len(text.split()) > 1 else 1.0)
    raw += 3.0 * bool(found.authors) + 0.5 * bool(found.categories)
    return 1.0 - math.exp(-raw / 2.5)


def score(found: _Match, paper: Paper, now: datetime) -> float:
    trend = min(1.0, math.log1p(paper.upvotes) / math.log1p(200)) if paper.upvotes else 0.0
    seen = paper.first_seen_at or now
    age_hours = max(0.0, (now - seen).total_seconds() / 3600)
    fresh = math.exp(-age_hours / 72)
    return round(0.70 * relevance(found) + 0.20 * trend + 0.10 * fresh, 4)


def explain(found: _Match, paper: Paper) -> str:
    parts: list[str] = []
    terms = sorted(dict.fromkeys(found.terms), key=lambda t: (not t[1] & TITLE, found.terms.index(t)))
    shown = []
    for text, bits in terms[:3]:
        where = "title" if bits & TITLE else "abstract"
        shown.append(f'"{text}" in {where}')
    if shown:
        parts.append("matched " + ", ".join(shown) + (f" (+{len(terms) - 3} more)" if len(terms) > 3 else ""))
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
        self.index = scan_papers(papers, self.table)

    def digest(
        self,
        subscriber: Subscriber,
        now: datetime,
        since: datetime | None = None,
        delivered: Container[str] = frozenset(),
    ) -> Digest:
        settings = Settings.of(subscriber, self.defaults)
        since = since if since is not None else now - settings.lookback
        papers = self.index.papers

        def eligible(i: int) -> bool:
            paper = papers[i]
            seen = paper.first_seen_at
            return (seen is None or seen >= since) and paper.id not in delivered

        # Each paper under the topic it matches best (ties: the subscriber's order).
        best: dict[int, tuple[float, int, _Match]] = {}
        matched_topics: dict[int, list[int]] = {}
        topics = [_CompiledTopic(t, n, self.table, self.index) for n, t in enumerate(subscriber.topics)]
        for topic in topics:
            for i in topic.candidates():
                if not eligible(i):
                    continue
                found = topic.match(i)
                if found is None:
                    continue
                value = score(found, papers[i], now)
                matched_topics.setdefault(i, []).append(topic.order)
                if i not in best or value > best[i][0]:
                    best[i] = (value, topic.order, found)

        per_topic: dict[int, list[DigestEntry]] = {t.order: [] for t in topics}
        for i, (value, order, found) in best.items():
            paper = papers[i]
            also = tuple(topics[o].name for o in matched_topics[i] if o != order)
            per_topic[order].append(DigestEntry(paper, value, explain(found, paper),
                                                tuple(t for t, _ in found.terms), also))
        for entries in per_topic.values():
            entries.sort(key=_rank)

        # Trending: the most upvoted new papers not already in a topic section.
        trending: list[DigestEntry] = []
        if settings.trending:
            taken = set(best)
            pool = [i for i in range(len(papers))
                    if i not in taken and (papers[i].upvotes or 0) > 0 and eligible(i)]
            pool.sort(key=lambda i: (-(papers[i].upvotes or 0), papers[i].id))
            for i in pool[:settings.trending]:
                paper = papers[i]
                trending.append(DigestEntry(paper, score(_Match(), paper, now),
                                            f"trending: {paper.upvotes} upvotes on Hugging Face"))

        sections, omitted = _apply_limits(topics, per_topic, settings, budget=settings.max_papers - len(trending))
        if trending:
            sections.append(Section(TRENDING, tuple(trending), trending=True))
        return Digest(subscriber.email, subscriber.name, now, since, tuple(sections), omitted)

    def digests(
        self,
        subscribers: Iterable[Subscriber],
        now: datetime,
        window: Callable[[Subscriber], tuple[datetime | None, Container[str]]] | None = None,
    ) -> Iterator[Digest]:
        """Digests for many subscribers, one at a time (nothing kept between them)."""
        for subscriber in subscribers:
            since, delivered = window(subscriber) if window else (None, frozenset())
            yield self.digest(subscriber, now, since, delivered)


def _rank(entry: DigestEntry) -> tuple[float, int, str]:
    return (-entry.score, -(entry.paper.upvotes or 0), entry.paper.id)


def _apply_limits(topics: list[_CompiledTopic], per_topic: dict[int, list[DigestEntry]], settings: Settings,
                  budget: int) -> tuple[list[Section], int]:
    """Cut each topic to max_per_topic, then the whole to the budget, dropping the lowest ranked first."""
    kept: dict[int, list[DigestEntry]] = {}
    dropped: dict[int, int] = {}
    for order, entries in per_topic.items():
        limit = settings.max_per_topic or len(entries)
        kept[order], dropped[order] = entries[:limit], max(0, len(entries) - limit)
    everything = sorted(((e, o) for o, es in kept.items() for e in es), key=lambda eo: (*_rank(eo[0]), eo[1]))
    budget = max(0, budget)
    for entry, order in everything[budget:]:
        kept[order].remove(entry)
        dropped[order] += 1
    sections = [Section(t.name, tuple(kept[t.order]), dropped[t.order]) for t in topics if kept[t.order]]
    return sections, sum(dropped.values())


def matcher_for(config: Config, papers: Sequence[Paper], subscribers: Sequence[Subscriber] | None = None) -> Matcher:
    return Matcher(subscribers if subscribers is not None else config.subscribers, config.defaults, papers)
