"""The papers scanned once against the term table: postings, author and category indexes, per-paper arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..models import Paper
from .normalise import raw_words, words_with_compounds
from .relevance import DescriptionScores, TopicText

if TYPE_CHECKING:
    from .learned import Learned
from .terms import TermTable
from .weights import (
    _COUNT_CAP,
    _FIELD_BITS,
    _ONE_MORE,
    ABSTRACT,
    ABSTRACT_WEIGHT,
    PHRASE_WEIGHT,
    REPEAT_WEIGHT,
    TITLE,
    TITLE_WEIGHT,
)


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


@dataclass(frozen=True)
class TextWords:
    """One text's words as the scan reads them: stemmed in order (and where each occurs),
    joined compounds, and the unstemmed ones (for prefix wildcards)."""

    sequence: tuple[str, ...]
    joined: frozenset[str]
    raw: frozenset[str]
    positions: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, text: str) -> TextWords:
        sequence, joined = words_with_compounds(text)
        positions: dict[str, list[int]] = {}
        for position, word in enumerate(sequence):
            positions.setdefault(word, []).append(position)
        return cls(tuple(sequence), frozenset(joined), frozenset(raw_words(text)),
                   {word: tuple(where) for word, where in positions.items()})


@dataclass(frozen=True)
class PaperWords:
    """A paper read once (paper_words): many indexes of the same papers, one per question
    (the manage page's preview asks one per visit), then skip reading the text again."""

    title: TextWords
    abstract: TextWords
    authors: tuple[AuthorName, ...]


def paper_words(papers: Sequence[Paper]) -> list[PaperWords]:
    return [PaperWords(TextWords.of(p.title), TextWords.of(p.abstract),
                       tuple(a for a in map(AuthorName.parse, p.authors) if a)) for p in papers]


class PaperIndex:
    """The papers scanned once against a term table: postings, author and category indexes,
    and per-paper arrays (upvotes, first seen, id order) for ranking. `words`: each paper's
    words read before (paper_words), in the papers' order; `pool`: their lexical pool made
    before (DescriptionScores), for described topics."""

    def __init__(self, papers: Sequence[Paper], table: TermTable, words: Sequence[PaperWords] | None = None,
                 pool: DescriptionScores | None = None) -> None:
        self.papers = list(papers)
        self.size = size = len(self.papers)
        self.position = {p.id: i for i, p in enumerate(self.papers)}
        self.hits: dict[int, dict[int, int]] = {}  # term id -> paper index -> TITLE|ABSTRACT bits
        self.by_category: dict[str, list[int]] = {}
        self.by_author: dict[str, list[tuple[int, AuthorName]]] = {}
        for index, paper in enumerate(self.papers):
            if words is not None:
                self._scan_read(index, paper, table, words[index])
            else:
                self._scan(index, paper, table)
        self.upvotes = np.array([p.upvotes or 0 for p in self.papers], dtype=np.float64)
        self.seen = np.array([p.first_seen_at.timestamp() if p.first_seen_at else np.nan for p in self.papers])
        self.by_id = np.array(sorted(range(size), key=lambda i: self.papers[i].id), dtype=np.intp)
        id_rank = np.empty(size, dtype=np.int64)
        id_rank[self.by_id] = np.arange(size)
        self.by_upvotes = sorted((i for i in range(size) if self.papers[i].upvotes),
                                 key=lambda i: (-self.upvotes[i], self.papers[i].id))
        self.upvoted = np.array(self.by_upvotes, dtype=np.intp)
        # The low bits of a rank key: upvotes descending, then id ascending.
        self.tie_key = (((1 << 20) - 1 - np.minimum(self.upvotes, (1 << 20) - 1).astype(np.int64)) << 21) | id_rank
        self.nothing = np.zeros(size, dtype=bool)
        self.nothing.flags.writeable = False
        # Dense arrays are made on demand and kept within a fixed budget (about 64 MiB, emptied
        # when full), never per subscriber.
        self._capacity = max(256, (64 << 20) // max(1, 8 * size))
        self._dense: dict[object, np.ndarray] = {}
        self._sparse: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # as large as `hits`, at most
        self._phrase = table.phrase
        self._all_postings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._described = pool  # the same papers, in the same order

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

    def _scan_read(self, index: int, paper: Paper, table: TermTable, read: PaperWords) -> None:
        """`_scan` of a paper read before: the table's words looked up in the paper's (a table
        of one person's few topics has far fewer words than a paper), the same postings."""
        hits, by_first, prefixes, longest = self.hits, table.by_first, table.prefixes, table.longest_prefix

        def hit(term_id: int, bit: int) -> None:
            postings = hits.setdefault(term_id, {})
            value = postings.get(index, 0) | bit
            if bit == ABSTRACT and value < _COUNT_CAP:
                value += _ONE_MORE
            postings[index] = value

        for bit, words in ((TITLE, read.title), (ABSTRACT, read.abstract)):
            sequence, size = words.sequence, len(words.sequence)
            for word, entries in by_first.items():
                where = words.positions.get(word)
                if where is not None:
                    for position in where:
                        for phrase, term_id in entries:
                            length = len(phrase)
                            if length == 1 or (position + length <= size
                                               and sequence[position:position + length] == phrase):
                                hit(term_id, bit)
                if word in words.joined:
                    for phrase, term_id in entries:
                        if len(phrase) == 1:
                            hit(term_id, bit)
            if prefixes:
                for word in words.raw:
                    for length in range(3, min(len(word), longest) + 1):
                        for term_id in prefixes.get(word[:length], ()):
                            hit(term_id, bit)
        for category in paper.categories:
            self.by_category.setdefault(category.lower(), []).append(index)
        for author in read.authors:
            self.by_author.setdefault(author.last, []).append((index, author))

    def description_scores(self, topics: Sequence[TopicText]) -> list[np.ndarray]:
        """Each described topic's closeness to every paper (relevance.py)."""
        return self._pool().of(topics)

    def description_matrix(self, topics: Sequence[TopicText]) -> np.ndarray:
        """`description_scores` as one array (topics × papers), made a batch at a time."""
        return self._pool().matrix(topics)

    def learned_probabilities(self, models: Sequence[Learned]) -> np.ndarray:
        """Readers' learned models of their topics applied to every paper (models × papers;
        learned.py)."""
        return self._pool().learned(models)

    def learned_leanings(self, models: Sequence[Learned]) -> np.ndarray:
        """Each paper's leaning in meaning towards what each model's reader liked (models ×
        papers; relevance.py)."""
        return self._pool().leanings(models)

    def _pool(self) -> DescriptionScores:
        """The papers as a lexical pool: given (made once for the same papers by the caller),
        or built when first asked for."""
        if self._described is None:
            self._described = DescriptionScores([(p.title, p.abstract) for p in self.papers])
        return self._described

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
        known = self._dense.get(("weights", term_id, field))
        if known is not None:  # most calls: no closures made
            return known
        bits = self.term_bits(term_id)
        if bits is None or term_id is None:
            return None
        common = float(rarity(np.array([len(self.hits[term_id])]), self.size)[0])
        return self._cached(("weights", term_id, field),
                            lambda: _weights(bits, field, (PHRASE_WEIGHT if phrase else 1.0) * common))

    def term_postings(self, term_id: int | None, phrase: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """(the papers in which a keyword occurs, what it adds to their relevance): the sparse
        form of `term_weights` with no field, for topics that match a small share of the papers."""
        if term_id is None:
            return None
        postings = self._sparse.get(term_id)
        if postings is None:
            weights = self.term_weights(term_id, None, phrase)
            if weights is None:
                return None
            papers = np.flatnonzero(weights)
            added = weights[papers]
            papers.flags.writeable = added.flags.writeable = False
            postings = self._sparse[term_id] = (papers, added)
        return postings

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`term_postings` of every term of the table in one table (CSR): term t occurs in
        papers[start[t]:start[t + 1]], adding added[...] to their relevance. Many keyword
        topics are then evaluated together in a few array operations."""
        if self._all_postings is None:
            terms = len(self._phrase)
            lengths = np.zeros(terms, dtype=np.intp)
            for term_id, postings in self.hits.items():
                lengths[term_id] = len(postings)
            start = np.zeros(terms + 1, dtype=np.intp)
            np.cumsum(lengths, out=start[1:])
            papers = np.zeros(start[-1], dtype=np.intp)
            bits = np.zeros(start[-1], dtype=np.uint8)
            for term_id, postings in self.hits.items():
                papers[start[term_id]:start[term_id + 1]] = list(postings)
                bits[start[term_id]:start[term_id + 1]] = list(postings.values())
            factor = np.where(np.repeat(np.array(self._phrase, dtype=bool), lengths), PHRASE_WEIGHT, 1.0)
            factor = factor * np.repeat(rarity(lengths, self.size), lengths)
            self._all_postings = (start, papers, _weights(bits, None, factor))
        return self._all_postings

    def term_present(self, term_id: int | None, field: str | None = None) -> np.ndarray:
        """Papers in which the term occurs (in the field, if given)."""
        known = self._dense.get(("present", term_id, field))
        if known is not None:  # most calls: no closures made
            return known
        bits = self.term_bits(term_id)
        if bits is None:
            return self.nothing
        return self._cached(("present", term_id, field), lambda: (bits & _FIELD_BITS[field]) != 0)

    def rank_keys(self, scores: np.ndarray, which: np.ndarray) -> np.ndarray:
        """One int64 per paper that sorts like (score desc, upvotes desc, id asc), for scores
        already rounded to 4 decimals: argpartition can then pick the best few."""
        return self.rank_key(scores[which], which)

    def rank_key(self, score: np.ndarray, papers: np.ndarray) -> np.ndarray:
        """`rank_keys` of `papers` scoring `score`; `by_id[key & ID_BITS]` is the paper again."""
        score = np.rint(score * 10_000).astype(np.int64)  # 0 .. 10,000
        return ((20_000 - score) << 41) | self.tie_key[papers]

    def allowed(self, categories: tuple[str, ...], excludes: tuple[int, ...]) -> np.ndarray:
        """Papers in any of `categories` (any paper, if none) and without any of the terms `excludes`."""
        def make() -> np.ndarray:
            mask = self.nothing if categories else ~self.nothing
            for pattern in categories:
                mask = mask | self.category_mask(pattern)
            for term_id in excludes:
                mask = mask & ~self.term_present(term_id)
            return mask

        return self._cached(("allowed", categories, excludes), make)

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


ID_BITS = (1 << 21) - 1  # the id rank's bits of a rank key


RARE_ENOUGH = 0.05  # a term in at most this share of the papers keeps its full weight
COUNTED_FROM = 50  # papers in a pool before a term's share says anything


def rarity(counts: np.ndarray, size: int) -> np.ndarray:
    """What a keyword's hits weigh for how common it is (papers it occurs in, `counts`, out of
    `size`): 1 up to RARE_ENOUGH of the papers, then less as it spreads (log(size/count) /
    log(1/RARE_ENOUGH)), never under 0.1. A term in 40 % of the day's papers says almost
    nothing, and a catch-all keyword (`model`) no longer outranks every specific topic."""
    if size < COUNTED_FROM:
        return np.ones(len(counts))
    share = np.maximum(counts, 1) / size
    return np.where(share <= RARE_ENOUGH, 1.0, np.clip(np.log(1 / share) / np.log(1 / RARE_ENOUGH), 0.1, 1.0))


def _weights(bits: np.ndarray, field: str | None, factor: float | np.ndarray) -> np.ndarray:
    """What a term adds to the relevance of papers where it has these TITLE|ABSTRACT bits
    (abstract mentions above), in `field` (None: both)."""
    title = (bits & TITLE) != 0 if field in (None, "title") else np.zeros(len(bits), dtype=bool)
    mentions = np.minimum(bits >> 2, 4).astype(np.float64) if field in (None, "abstract") else 0.0
    abstract = np.where(mentions > 0, ABSTRACT_WEIGHT + REPEAT_WEIGHT * (mentions - 1), 0.0)
    return np.maximum(np.where(title, TITLE_WEIGHT, 0.0), abstract) * factor
