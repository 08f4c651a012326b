"""How close each paper is to each topic: in its words and in its meaning, for all topics at
once, on one scale so one threshold means the same for every topic.

- Words: BM25 of a topic's name, description and keywords against a paper's title and
  abstract, one sparse-matrix product. Words are the matcher's (normalise.py): folded, lightly
  stemmed, so "KV-cache" in a description meets "KV cache" in an abstract. A short list of
  function words is dropped; everything else is weighed by how rare it is among the papers
  (BM25's idf): a word in 40 % of the papers says almost nothing, a word in three of them says
  a lot. The title counts twice; keywords count twice in the topic, the name and the
  description once. Each topic's scores are divided by the best paper's in the pool (the
  papers being matched), but by no less than FLOOR of what the topic's own words could score,
  so that in a small pool the best paper is not "close" by default.
- Meaning (semantic.py): the cosine of a sentence encoder's vectors of the topic's whole text
  and of the paper's, and the best cosine of any of its keywords'. It finds the papers that
  say the same in other words and leaves out those that share a word in another sense ("ASR"
  as attack success rate in a speech topic).
- Closeness is LEXICAL_SHARE of the words' plus the meaning's two shares. A paper is in the
  topic when that, plus KEYWORD_BONUS if one of its keywords matches, reaches THRESHOLD (moved
  by SENSITIVITY_STEP per step of `sensitivity`). Without the encoder's files, the words' alone,
  scaled by WORDS_ONLY_SCALE.
- The constants were chosen on the judged set (bench/relevance.py, medians of 5 splits):
  macro-F1 0.72 through the matcher, against 0.58 for the words alone and 0.52 for keywords.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import count
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .normalise import raw_words, stem

if TYPE_CHECKING:
    from scipy import sparse

    from .learned import Learned


K = TypeVar("K")  # what a kept row is kept under (_kept_rows)


def csr_matrix(*args: object, **kwargs: object) -> sparse.csr_matrix:
    """scipy's CSR matrix, scipy imported on first use: it brings numpy.f2py, numpy.ma and pydoc,
    about 0.2 s of every command's start-up, and only scoring by description needs it."""
    from scipy.sparse import csr_matrix as made

    return made(*args, **kwargs)


K1 = 1.2
B = 0.75
THRESHOLD = 0.46
KEYWORD_BONUS = 0.05
SENSITIVITY_STEP = 0.04  # one step of a topic's `sensitivity`: more papers (+) or fewer (-)
FLOOR = 0.3
KEPT_ROWS = 4096  # rows a pool keeps of each kind (topics, models, keyword phrases): a fixed budget, emptied when full
SMALLEST_POOL = 50  # papers the words' rarity is counted over, at least
# A paper's closeness to a topic: shares of the words' (BM25) and of the meaning's (semantic.py):
# the cosine of the topic's whole text, and the best of its keywords'
LEXICAL_SHARE = 0.2
WHOLE_MEANING_SHARE = 0.6
KEYWORD_MEANING_SHARE = 0.2
WORDS_ONLY_SCALE = 0.97  # without the encoder: the words' closeness, scaled so THRESHOLD fits it
COMMON_CELLS = 1 << 23  # the dense table of common words (LexicalIndex.products): at most 64 MB
COMMON_AT_LEAST = 16  # papers a common word is in, at least
TITLE_REPEAT = 2
KEYWORD_REPEAT = 2

# Words that say nothing about a topic (a short list: idf discounts the rest).
STOP = frozenset("""a an and are as at be by for from has have in into is it its of on or that the their this to
was were which with we our these those using use used based via new towards toward can also than more such both
between over under while how what when where who whose not no paper propose proposed approach method methods
show shows study results result""".split())


@lru_cache(maxsize=65_536)  # topics' keywords and names recur across subscribers
def _terms(text: str) -> tuple[str, ...]:
    return tuple(filter(None, map(_term, raw_words(text))))  # as normalise.words, filtered


@lru_cache(maxsize=200_000)
def _term(word: str) -> str:
    """One folded word's stem, or "" for a function word or a single letter."""
    stemmed = stem(word)
    return stemmed if stemmed not in STOP and len(stemmed) > 1 else ""


def terms(text: str) -> list[str]:
    return list(_terms(text))


@dataclass(frozen=True)  # hashable: scores are kept per topic text
class TopicText:
    name: str
    description: str | None
    keywords: tuple[str, ...]


@lru_cache(maxsize=65_536)  # a topic's words, whatever the pool: presets recur, a daemon matches daily
def _query_terms(topic: TopicText) -> tuple[str, ...]:
    found = _terms(topic.name) + _terms(topic.description or "")
    for keyword in topic.keywords:
        found += _terms(keyword.rstrip("*")) * KEYWORD_REPEAT
    return found


class LexicalIndex:
    """Papers as BM25-weighted term vectors (CSR: papers × vocabulary)."""

    def __init__(self, texts: Sequence[tuple[str, str]]) -> None:
        numbered: defaultdict[str, int] = defaultdict(count().__next__)  # a new word: the next column
        cols: list[int] = []
        ends = [0]
        for title, abstract in texts:  # rows one after another: CSR as made, no coordinates to sort
            cols += map(numbered.__getitem__, _terms(title) * TITLE_REPEAT + _terms(abstract))
            ends.append(len(cols))
        self.vocabulary: dict[str, int] = dict(numbered)
        self.words = list(numbered)  # by column: columns are numbered as words first come
        size, width = len(texts), max(1, len(self.vocabulary))
        counts = csr_matrix((np.ones(len(cols)), np.array(cols, dtype=np.int32), np.array(ends)), shape=(size, width))
        counts.sum_duplicates()
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        average = lengths.mean() if size else 1.0
        df = np.bincount(counts.indices, minlength=width)
        # A handful of papers cannot say how rare a word is (in 3 papers every word is in 1 of 3
        # or more): a pool smaller than SMALLEST_POOL counts as part of one that size whose
        # other papers lack its words, so a feed of three papers does not make its best paper
        # "close" to every topic.
        self.idf = np.log1p((max(size, SMALLEST_POOL) - df + 0.5) / (df + 0.5))
        # BM25's saturation and length normalisation, per stored value
        per_row = np.repeat(lengths, np.diff(counts.indptr))
        tf = counts.data
        counts.data = self.idf[counts.indices] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * per_row / max(average, 1e-9)))
        self.weights = counts  # papers × terms
        self.size = size
        self._slot: np.ndarray | None = None
        self._common = np.zeros((0, size))
        self._unit: sparse.csr_matrix | None = None
        self._unit_by_term: sparse.csr_matrix | None = None

    @cached_property
    def by_term(self) -> sparse.csr_matrix:
        """The weights transposed (terms × papers): what a product with topics wants (made when
        first needed: training a model never does)."""
        return self.weights.T.tocsr()

    def unit_rows(self) -> sparse.csr_matrix:
        """The papers' term weights scaled to unit length (a learned model's features)."""
        if self._unit is None:  # each row's values scaled in place of a product with a diagonal (a third of the time)
            weights = self.weights
            per_row = np.diff(weights.indptr)
            squares = np.bincount(np.repeat(np.arange(self.size), per_row), weights.data * weights.data, minlength=self.size)
            norms = np.sqrt(squares)
            scale = np.repeat(1.0 / np.where(norms > 0, norms, 1.0), per_row)
            self._unit = csr_matrix((weights.data * scale, weights.indices, weights.indptr), shape=weights.shape)
        return self._unit

    def unit_by_term(self) -> sparse.csr_matrix:
        """`unit_rows` transposed (terms × papers): what a product with models wants."""
        if self._unit_by_term is None:
            self._unit_by_term = self.unit_rows().T.tocsr()
        return self._unit_by_term

    def queries(self, topics: Sequence[TopicText]) -> sparse.csr_matrix:
        """Topics as term-count vectors over this vocabulary (topics × terms); unknown words drop out."""
        return self.queries_and_unseen(topics)[0]

    def queries_and_unseen(self, topics: Sequence[TopicText]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """`queries`, and how many of each topic's words are in no paper of the pool."""
        found: list[str] = []
        ends = np.zeros(len(topics) + 1, dtype=np.int64)
        for row, topic in enumerate(topics):  # tens of thousands: one list, looked up at once
            found += _query_terms(topic)
            ends[row + 1] = len(found)
        get = self.vocabulary.get
        columns = np.array([get(term, -1) for term in found], dtype=np.int64)
        known = columns >= 0
        indptr = np.concatenate([[0], np.cumsum(known)])[ends]  # each row's end, unknown words left out
        matrix = csr_matrix((np.ones(int(known.sum())), columns[known], indptr),
                                   shape=(len(topics), self.weights.shape[1]))
        matrix.sum_duplicates()  # a word said twice counts twice
        return matrix, np.diff(ends) - np.diff(indptr)

    def products(self, queries: sparse.csr_matrix) -> np.ndarray:
        """`queries` times every paper's term weights (queries × papers): the common words (in
        many papers, and in most topics' descriptions) from a dense table, in runs of contiguous
        numbers; the rest as a sparse product. Twice as fast as one sparse product, whose result
        is nearly all filled in."""
        slot = self._common_slot()
        rows = np.repeat(np.arange(queries.shape[0]), np.diff(queries.indptr))
        common = slot[queries.indices] >= 0
        shape = queries.shape
        in_common = csr_matrix((queries.data[common], (rows[common], slot[queries.indices[common]])),
                                      shape=(shape[0], len(self._common)))
        rest = csr_matrix((queries.data[~common], (rows[~common], queries.indices[~common])), shape=shape)
        result = np.asarray(in_common @ self._common)
        added = (rest @ self.by_term).tocoo()
        result[added.row, added.col] += added.data  # each (query, paper) once
        return result

    def _common_slot(self) -> np.ndarray:
        """Each term's row in the dense table of common words (-1: not one), made when first needed."""
        if self._slot is None:
            postings = np.diff(self.by_term.indptr)
            # In more than 1 paper in 20; at most 8M cells (64 MB), the most common first
            common = np.argsort(-postings, kind="stable")[: max(0, COMMON_CELLS // max(1, self.size))]
            common = np.sort(common[postings[common] > max(COMMON_AT_LEAST, self.size // 20)])
            slot = np.full(len(postings), -1, dtype=np.int64)
            slot[common] = np.arange(len(common))
            # the table first, then the slots, each whole: the manage pages' threads share a pool
            self._common = self.by_term[common].toarray()
            self._slot = slot
        return self._slot

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

    def __init__(self, texts: Sequence[tuple[str, str]], *, wait_for_meaning: bool = True) -> None:
        self.texts = texts
        self.wait_for_meaning = wait_for_meaning  # false: by words alone until the papers are encoded
        self.lexical = LexicalIndex(texts)
        self.known: dict[TopicText, np.ndarray] = {}
        self.known_learned: dict[Learned, np.ndarray] = {}
        self.known_phrases: dict[str, np.ndarray] = {}  # keyword phrases' cosines (`_keywords_near`)

    @cached_property
    def paper_vectors(self) -> np.ndarray | None:
        """The papers' meaning (semantic.py: papers × 384), encoded when first needed; None
        without the encoder, or, not waiting, until they are encoded."""
        from . import semantic

        return semantic.vectors([semantic.paper_text(title, abstract) for title, abstract in self.texts],
                                wait=self.wait_for_meaning)

    def of(self, topics: Sequence[TopicText]) -> list[np.ndarray]:
        """Each topic's closeness to every paper (a row each, read-only)."""
        # Answered from what this call found or made, never from `known` again: the pool may be
        # shared by threads (the manage pages' previews), and another may empty `known` meanwhile.
        found = {t: row for t in dict.fromkeys(topics) if (row := self.known.get(t)) is not None}
        missing = [t for t in dict.fromkeys(topics) if t not in found]
        if missing:
            found.update(zip(missing, self._made(missing)))
        return [found[t] for t in topics]

    def matrix(self, topics: Sequence[TopicText]) -> np.ndarray:
        """`of` as one array (topics × papers, read-only): as made when every topic is new and
        named once (a block of subscribers' own topics), without copying."""
        if len(set(topics)) == len(topics) and not any(t in self.known for t in topics):
            return self._made(list(topics))
        rows = self.of(topics)
        return np.stack(rows) if rows else np.zeros((0, self.lexical.size))

    def _made(self, topics: list[TopicText]) -> np.ndarray:
        """The closeness of topics not known yet, one sparse product; kept per topic."""
        if len(self.known) + len(topics) > KEPT_ROWS:
            self.known.clear()
        queries, unseen_words = self.lexical.queries_and_unseen(topics)
        raw = self.lexical.products(queries)
        # What the topic's words could score, those in no paper of the pool included (as rare as
        # a word can be): a pool that has few of them has no paper close by words alone
        unseen = np.log1p((max(self.lexical.size, SMALLEST_POOL) + 0.5) / 0.5)
        possible = (queries @ self.lexical.idf + unseen_words * unseen) * (K1 + 1)
        scale = np.maximum(raw.max(axis=1, initial=0.0), FLOOR * possible)
        raw /= np.where(scale > 0, scale, 1.0)[:, None]
        meaning = self._meaning(topics)
        if meaning is None:
            raw *= WORDS_ONLY_SCALE
        else:
            raw *= LEXICAL_SHARE
            raw += meaning
        raw.flags.writeable = False
        self.known.update(zip(topics, raw))
        return raw

    def _meaning(self, topics: list[TopicText]) -> np.ndarray | None:
        """How close in meaning each topic is to each paper (topics × papers), weighed as the
        closeness wants it: the cosine of the topic's whole text, and the best of its
        keywords' (a topic about "speech recognition, text-to-speech" is close to a paper on
        either), each said with the topic's name ("Speech: ASR", not an acronym alone, which
        is nearer "attack success rate"); None without the encoder."""
        from . import semantic

        papers = self.paper_vectors
        if papers is None:
            return None
        whole = semantic.vectors([semantic.topic_text(t.name, t.description, t.keywords) for t in topics])
        said_as = [[semantic.keyword_text(t.name, k) for k in t.keywords] for t in topics]
        near = self._keywords_near(list(dict.fromkeys(phrase for mine in said_as for phrase in mine)), papers)
        if whole is None or near is None:
            return None
        meaning = whole @ papers.T
        best = meaning.copy()  # a topic without keywords: its whole text's
        # The k-th keyword of every topic that has one at once (np.maximum.reduceat over the
        # topics' rows was 20x slower)
        for k in range(max((len(mine) for mine in said_as), default=0)):
            said_by = [t for t, mine in enumerate(said_as) if len(mine) > k]
            kth = np.stack([near[said_as[t][k]] for t in said_by])
            best[said_by] = kth if k == 0 else np.maximum(best[said_by], kth, out=kth)
        meaning *= WHOLE_MEANING_SHARE
        meaning += KEYWORD_MEANING_SHARE * best
        return meaning

    def _keywords_near(self, phrases: list[str], papers: np.ndarray) -> dict[str, np.ndarray] | None:
        """Each keyword phrase's cosine with every paper (a row each), made once per phrase and
        kept: topics share them (presets, common keywords), block after block; None without
        the encoder."""
        from . import semantic

        def cosines(missing: list[str]) -> np.ndarray | None:
            said = semantic.vectors(missing)
            return None if said is None else said @ papers.T

        return _kept_rows(self.known_phrases, phrases, cosines)

    def leanings(self, models: Sequence[Learned]) -> np.ndarray:
        """How much nearer in meaning each paper is to the papers each model's reader liked than
        to those they said were not for them (models × papers: cosine toward minus cosine away;
        with nothing to set against, less the pool's median); zeros without the encoder."""
        papers = self.paper_vectors
        if papers is None or not models:
            return np.zeros((len(models), self.lexical.size))
        toward = np.zeros((len(models), papers.shape[1]), dtype=np.float32)
        away = np.zeros_like(toward)
        for n, model in enumerate(models):
            if len(model.toward) == papers.shape[1]:
                toward[n] = model.toward
            if len(model.away) == papers.shape[1]:
                away[n] = model.away
        leaning = (toward - away) @ papers.T
        # Without a "not for me", from the pool's typical paper: liked papers are a little like most
        alone = ~away.any(axis=1)
        if self.lexical.size:  # (no papers: no median, nothing to move)
            leaning[alone] -= np.median(leaning[alone], axis=1, keepdims=True)
        return leaning

    def learned(self, models: Sequence[Learned]) -> np.ndarray:
        """Learned models' probabilities for every paper of the pool (models × papers,
        read-only): the models not kept yet in one sparse product."""
        rows = _kept_rows(self.known_learned, models, lambda missing: probabilities(missing, self.lexical))
        assert rows is not None  # probabilities always makes them
        made = np.stack([rows[m] for m in models]) if models else np.zeros((0, self.lexical.size))
        made.flags.writeable = False
        return made


def _kept_rows(kept: dict[K, np.ndarray], keys: Sequence[K],
               make: Callable[[list[K]], np.ndarray | None]) -> dict[K, np.ndarray] | None:
    """Each of `keys`' row (read-only): from `kept`, or made by `make` (the missing ones, at
    once) and kept; None when `make` gives None. Answered from what this call found or made,
    never from `kept` again: threads share a pool, and another may empty it meanwhile."""
    found = {key: row for key in dict.fromkeys(keys) if (row := kept.get(key)) is not None}
    missing = [key for key in dict.fromkeys(keys) if key not in found]
    if missing:
        made = make(missing)
        if made is None:
            return None
        made.flags.writeable = False
        if len(kept) + len(missing) > KEPT_ROWS:
            kept.clear()
        kept.update(zip(missing, made))
        found.update(zip(missing, made))
    return found


def probabilities(models: Sequence[Learned], lexical: LexicalIndex) -> np.ndarray:
    """How likely each paper of `lexical` is one each model's reader wants (models × papers, 0
    to 1): the models' word weights as one sparse matrix, multiplied once."""
    get = lexical.vocabulary.get
    columns = [np.array([get(word, -1) for word in model.words], dtype=np.int64) for model in models]
    lengths = [len(c) for c in columns]
    found = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
    values = np.concatenate([model.coefficients for model in models]) if models else np.zeros(0)
    rows = np.repeat(np.arange(len(models)), lengths)
    known = found >= 0
    coef = csr_matrix((values[known], (rows[known], found[known])), shape=(len(models), lexical.weights.shape[1]))
    intercepts = np.array([model.intercept for model in models])
    decision = (coef @ lexical.unit_by_term()).toarray() + intercepts[:, None]
    return 1.0 / (1.0 + np.exp(-decision))
