"""The term table: every distinct keyword, phrase and wildcard of every topic, each with one id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import Subscriber
from ..query import parse_query, terms
from .normalise import joined, term_key


@dataclass
class TermTable:
    """Every distinct keyword, phrase and wildcard of every topic, each with one id."""

    ids: dict[tuple[tuple[str, ...], bool], int] = field(default_factory=dict)
    by_first: dict[str, list[tuple[tuple[str, ...], int]]] = field(default_factory=dict)
    prefixes: dict[str, list[int]] = field(default_factory=dict)
    longest_prefix: int = 0
    phrase: list[bool] = field(default_factory=list)  # term id -> several words
    _lookup: dict[tuple[str, bool], int | None] = field(default_factory=dict)
    _by_keyword: dict[str, int | None] = field(default_factory=dict)

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

    def keyword_id(self, keyword: str) -> int | None:
        """`id_of` a topic's keyword or exclude as written (``quantiz*`` a prefix)."""
        found = self._by_keyword.get(keyword, -1)
        if found == -1:
            found = self._by_keyword[keyword] = self.id_of(keyword.rstrip("*"), keyword.endswith("*"))
        return found

    key = staticmethod(term_key)


def compile_terms(subscribers: Iterable[Subscriber]) -> TermTable:
    """One table for the topics of all subscribers (distinct terms only). The keywords and
    queries of tens of thousands of topics are gathered first and each distinct one added
    once: most recur."""
    keywords: list[str] = []
    queries: list[str] = []
    for subscriber in subscribers:
        for topic in subscriber.topics:
            keywords += topic.keywords
            keywords += topic.exclude
            if topic.query:
                queries.append(topic.query)
    table = TermTable()
    for keyword in dict.fromkeys(keywords):
        table.add(keyword.rstrip("*"), keyword.endswith("*"))
    for query in dict.fromkeys(queries):
        for term in terms(parse_query(query)):
            if term.field in (None, "title", "abstract"):
                table.add(term.text, term.prefix)
    return table
