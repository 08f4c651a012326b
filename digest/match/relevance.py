"""How close each paper is to each topic's own words: BM25 of a topic's name, description and
keywords against a paper's title and abstract, for all topics at once as one sparse-matrix
product, then scaled per topic so one threshold means the same for every topic.

- Words are the matcher's (normalise.py): folded, lightly stemmed, so "KV-cache" in a
  description meets "KV cache" in an abstract. A short list of function words is dropped;
  everything else is weighed by how rare it is among the papers (BM25's idf): a word in 40 %
  of the papers says almost nothing, a word in three of them says a lot.
- The title counts twice: a word in the title says more about what the paper is about.
- Keywords count twice in the topic, the name once, the description once: the keywords are
  what the person chose to type.
- A topic's raw scores differ in scale from another's (a long description adds up more), so
  each topic's scores are divided by the best paper's in the pool the document frequencies
  come from (the papers being matched: the window of recent ones), but by no less than
  FLOOR of what the topic's own words could score, so that in a small pool the best paper is
  not "close" by default. A paper is in the topic when that, plus KEYWORD_BONUS if one of its
  keywords matches, reaches THRESHOLD (moved by SENSITIVITY_STEP per step of `sensitivity`).
  The constants were chosen on the judged set (bench/relevance.py: macro-F1 0.61 against 0.55
  for keywords alone, the threshold chosen leaving the topic out).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from .normalise import words

if TYPE_CHECKING:
    from .learned import Learned

K1 = 1.2
B = 0.75
THRESHOLD = 0.59
KEYWORD_BONUS = 0.2
SENSITIVITY_STEP = 0.08  # one step of a topic's `sensitivity`: more papers (+) or fewer (-)
FLOOR = 0.3
TITLE_REPEAT = 2
KEYWORD_REPEAT = 2

# Words that say nothing about a topic (a short list: idf discounts the rest).
STOP = frozenset("""a an and are as at be by for from has have in into is it its of on or that the their this to
was were which with we our these those using use used based via new towards toward can also than more such both
between over under while how what when where who whose not no paper propose proposed approach method methods
show shows study results result""".split())


@lru_cache(maxsize=65_536)  # topics' keywords and names recur across subscribers
def _terms(text: str) -> tuple[str, ...]:
    return tuple([w for w in words(text) if w not in STOP and len(w) > 1])


def terms(text: str) -> list[str]:
    return list(_terms(text))


@dataclass(frozen=True)  # hashable: scores are kept per topic text
class TopicText:
    name: str
    description: str | None
    keywords: tuple[str, ...]


class LexicalIndex:
    """Papers as BM25-weighted term vectors (CSR: papers × vocabulary)."""

    def __init__(self, texts: Sequence[tuple[str, str]]) -> None:
        numbered: defaultdict[str, int] = defaultdict(count().__next__)  # a new word: the next column
        rows: list[int] = []
        cols: list[int] = []
        for row, (title, abstract) in enumerate(texts):
            found = _terms(title) * TITLE_REPEAT + _terms(abstract)
            rows += [row] * len(found)
            cols += map(numbered.__getitem__, found)
        self.vocabulary: dict[str, int] = dict(numbered)
        size, width = len(texts), max(1, len(self.vocabulary))
        counts = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, width))
        counts.sum_duplicates()
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        average = lengths.mean() if size else 1.0
        df = np.bincount(counts.indices, minlength=width)
        self.idf = np.log1p((size - df + 0.5) / (df + 0.5))
        # BM25's saturation and length normalisation, per stored value
        per_row = np.repeat(lengths, np.diff(counts.indptr))
        tf = counts.data
        counts.data = self.idf[counts.indices] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * per_row / max(average, 1e-9)))
        self.weights = counts  # papers × terms
        self.by_term = counts.T.tocsr()  # terms × papers: what a product with topics wants
        self.size = size
        self._known_columns: dict[str, list[int]] = {}
        self._unit: sparse.csr_matrix | None = None

    def _columns(self, text: str) -> list[int]:
        """The vocabulary's columns of a text's terms (kept: names, keywords and presets'
        descriptions recur across topics)."""
        found = self._known_columns.get(text)
        if found is None:
            if len(self._known_columns) > 65_536:
                self._known_columns.clear()
            vocabulary = self.vocabulary
            found = self._known_columns[text] = [col for term in _terms(text) if (col := vocabulary.get(term)) is not None]
        return found

    def unit_rows(self) -> sparse.csr_matrix:
        """The papers' term weights scaled to unit length (a learned model's features)."""
        if self._unit is None:
            norms = np.sqrt(np.asarray(self.weights.multiply(self.weights).sum(axis=1)).ravel())
            self._unit = sparse.csr_matrix(sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ self.weights)
        return self._unit

    def queries(self, topics: Sequence[TopicText]) -> sparse.csr_matrix:
        """Topics as term-count vectors over this vocabulary (topics × terms); unknown words drop out."""
        rows: list[int] = []
        cols: list[int] = []
        columns = self._columns
        for row, topic in enumerate(topics):
            found = [*columns(topic.name), *columns(topic.description or "")]
            for keyword in topic.keywords:
                found += columns(keyword.rstrip("*")) * KEYWORD_REPEAT
            rows += [row] * len(found)
            cols += found
        matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(topics), self.weights.shape[1]))
        matrix.sum_duplicates()  # a word said twice counts twice
        return matrix

    def scores(self, topics: Sequence[TopicText]) -> np.ndarray:
        """Raw BM25 of every topic against every paper (topics × papers), one sparse product."""
        return (self.queries(topics) @ self.by_term).toarray()


def standardised(raw: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """Each topic's scores as z-scores against its scores over `pool` (topics × pool papers;
    default: the same papers)."""
    pool = raw if pool is None else pool
    mean = pool.mean(axis=1, keepdims=True)
    std = pool.std(axis=1, keepdims=True)
    return (raw - mean) / np.where(std > 0, std, 1.0)


class DescriptionScores:
    """Each described topic's closeness to every paper of a pool (0 to about 1, see the module
    docstring), computed a batch of topics at a time and kept per topic text."""

    def __init__(self, texts: Sequence[tuple[str, str]]) -> None:
        self.lexical = LexicalIndex(texts)
        self.known: dict[TopicText, np.ndarray] = {}
        self.known_learned: dict[Learned, np.ndarray] = {}

    def of(self, topics: Sequence[TopicText]) -> list[np.ndarray]:
        # Answered from what this call found or made, never from `known` again: the pool may be
        # shared by threads (the manage pages' previews), and another may empty `known` meanwhile.
        found = {t: row for t in dict.fromkeys(topics) if (row := self.known.get(t)) is not None}
        missing = [t for t in dict.fromkeys(topics) if t not in found]
        if missing:
            if len(self.known) + len(missing) > 4096:  # a fixed budget, emptied when full
                self.known.clear()
            queries = self.lexical.queries(missing)
            raw = (queries @ self.lexical.by_term).toarray()
            possible = (queries @ self.lexical.idf) * (K1 + 1)
            scale = np.maximum(raw.max(axis=1, initial=0.0), FLOOR * possible)
            raw /= np.where(scale > 0, scale, 1.0)[:, None]
            raw.flags.writeable = False
            made = dict(zip(missing, raw))
            self.known.update(made)
            found.update(made)
        return [found[t] for t in topics]

    def learned(self, model: Learned) -> np.ndarray:
        """A learned model's probabilities for every paper of the pool (kept per model)."""
        found = self.known_learned.get(model)
        if found is None:
            if len(self.known_learned) > 4096:
                self.known_learned.clear()
            found = self.known_learned[model] = model.probabilities(self.lexical)
            found.flags.writeable = False
        return found
