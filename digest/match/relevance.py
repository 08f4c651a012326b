"""How close each paper is to each topic's own words: BM25 of a topic's name, description and
keywords against a paper's title and abstract, for all topics at once as one sparse-matrix
product, then standardised per topic so one threshold means the same for every topic.

- Words are the matcher's (normalise.py): folded, lightly stemmed, so "KV-cache" in a
  description meets "KV cache" in an abstract. A short list of function words is dropped;
  everything else is weighed by how rare it is among the papers (BM25's idf): a word in 40 %
  of the papers says almost nothing, a word in three of them says a lot.
- The title counts twice: a word in the title says more about what the paper is about.
- Keywords count twice in the topic, the name once, the description once: the keywords are
  what the person chose to type.
- A topic's raw scores differ in scale from another's (a long description adds up more), so
  each topic's scores are standardised against its scores over the pool the document
  frequencies come from (the store's recent papers): z = (score - mean) / std. "In the digest"
  is then z above one threshold (shifted per topic by `sensitivity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .normalise import words

K1 = 1.2
B = 0.75
TITLE_REPEAT = 2
KEYWORD_REPEAT = 2

# Words that say nothing about a topic (a short list: idf discounts the rest).
STOP = frozenset("""a an and are as at be by for from has have in into is it its of on or that the their this to
was were which with we our these those using use used based via new towards toward can also than more such both
between over under while how what when where who whose not no paper propose proposed approach method methods
show shows study results result""".split())


def terms(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOP and len(w) > 1]


@dataclass(frozen=True)
class TopicText:
    name: str
    description: str | None
    keywords: Sequence[str]

    def terms(self) -> list[str]:
        found = terms(self.name) + terms(self.description or "")
        for keyword in self.keywords:
            found += terms(keyword.rstrip("*")) * KEYWORD_REPEAT
        return found


class LexicalIndex:
    """Papers as BM25-weighted term vectors (CSR: papers × vocabulary)."""

    def __init__(self, texts: Sequence[tuple[str, str]]) -> None:
        self.vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for row, (title, abstract) in enumerate(texts):
            for term in terms(title) * TITLE_REPEAT + terms(abstract):
                rows.append(row)
                cols.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
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
        self.size = size

    def queries(self, topics: Sequence[TopicText]) -> sparse.csr_matrix:
        """Topics as term-count vectors over this vocabulary (topics × terms); unknown words drop out."""
        rows, cols, values = [], [], []
        for row, topic in enumerate(topics):
            counted: dict[int, int] = {}
            for term in topic.terms():
                col = self.vocabulary.get(term)
                if col is not None:
                    counted[col] = counted.get(col, 0) + 1
            for col, count in counted.items():
                rows.append(row)
                cols.append(col)
                values.append(float(count))
        return sparse.csr_matrix((values, (rows, cols)), shape=(len(topics), self.weights.shape[1]))

    def scores(self, topics: Sequence[TopicText]) -> np.ndarray:
        """Raw BM25 of every topic against every paper (topics × papers), one sparse product."""
        return np.asarray((self.queries(topics) @ self.weights.T).todense())


def standardised(raw: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """Each topic's scores as z-scores against its scores over `pool` (topics × pool papers;
    default: the same papers)."""
    pool = raw if pool is None else pool
    mean = pool.mean(axis=1, keepdims=True)
    std = pool.std(axis=1, keepdims=True)
    return (raw - mean) / np.where(std > 0, std, 1.0)
