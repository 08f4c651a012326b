"""What a reader's ratings teach about one of their topics: a logistic regression on the papers'
words (scikit-learn), trained when the ratings change, never per digest.

Positives are the papers they marked "more like this" (and a topic's examples), negatives the
ones marked "not for me" plus a sample of recent papers they never rated (most papers are not
for any one topic). Features are the papers' BM25 term weights (relevance.py), scaled to unit
length, so the model is a weight per word: kept as (word, weight) pairs, it applies to any
later pool of papers, whatever that pool's vocabulary. It moves a paper's closeness from the
pool's typical paper: up when it likes the paper more, down when less (topics.py), by a weight
that grows with the ratings behind it (WEIGHT_PER_RATING each, up to MAX_WEIGHT). The weights
were chosen on the judged set (bench/relevance.py): closeness in meaning spans little (a
threshold of 0.46), so a model that moves it by more than about 0.08 overrules the description.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ..config import Subscriber
from ..models import Paper
from .relevance import LexicalIndex, probabilities

KEPT_WORDS = 400  # the words that weigh most, either way
WEIGHT_PER_RATING = 0.003
WEIGHT_PER_EXAMPLE = 0.015  # an example is chosen with care, "exactly what I want": it says more than a click
MAX_WEIGHT = 0.075
LEANING_PER_RATING = 0.03
LEANING_PER_EXAMPLE = 0.01
MAX_LEANING = 0.6


@dataclass(frozen=True)
class Learned:
    words: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    ratings: int
    liked: tuple[str, ...]  # titles of the papers liked, newest first (for the why-line)
    # Titles of the topic's examples among those liked (subscribe/learning.py sets it): the
    # why-line calls them examples, not papers the reader liked.
    examples: tuple[str, ...] = ()
    # In meaning (semantic.py): the mean vector of the papers liked, and of those "not for me"
    # (empty: none, or no encoder). A paper nearer the first than the second moves up.
    toward: tuple[float, ...] = ()
    away: tuple[float, ...] = ()

    def __hash__(self) -> int:  # kept: a model is a dict key per topic and per pool, its words many
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash((self.words, self.weights, self.intercept, self.ratings, self.liked, self.toward, self.away))

    @cached_property
    def coefficients(self) -> np.ndarray:
        """The words' weights as an array (for relevance.probabilities)."""
        return np.array(self.weights)

    @property
    def leaning_weight(self) -> float:
        """How much a paper's leaning in meaning (toward the liked, away from the rest) moves its
        closeness: it grows with the ratings as `weight` does."""
        return self._grown(LEANING_PER_RATING, LEANING_PER_EXAMPLE, MAX_LEANING)

    def _grown(self, per_rating: float, per_example: float, most: float) -> float:
        """A weight that grows with the ratings and the examples behind the model, up to `most`."""
        examples = len(self.examples)
        return min(most, per_rating * (self.ratings - examples) + per_example * examples)

    @property
    def disliked(self) -> int:
        """How many papers were rated "not for me"."""
        return self.ratings - len(self.liked)

    @property
    def weight(self) -> float:
        """How much the model moves a paper's closeness (0 to MAX_WEIGHT)."""
        return self._grown(WEIGHT_PER_RATING, WEIGHT_PER_EXAMPLE, MAX_WEIGHT)

    def to_json(self) -> str:
        return json.dumps({"words": self.words, "weights": self.weights, "intercept": self.intercept,
                           "ratings": self.ratings, "liked": self.liked, "examples": self.examples,
                           "toward": self.toward, "away": self.away})

    @classmethod
    def from_json(cls, text: str) -> Learned:
        data = json.loads(text)
        return cls(tuple(data["words"]), tuple(data["weights"]), float(data["intercept"]), int(data["ratings"]),
                   tuple(data["liked"]), tuple(data.get("examples", ())), tuple(data.get("toward", ())),
                   tuple(data.get("away", ())))

    def probabilities(self, lexical: LexicalIndex) -> np.ndarray:
        """How likely each paper of `lexical` is one the reader wants (0 to 1)."""
        return probabilities([self], lexical)[0]


def train(liked: Sequence[Paper], disliked: Sequence[Paper], unrated: Sequence[Paper]) -> Learned | None:
    """The model of these ratings (None without a liked paper, or with nothing to set it against)."""
    from sklearn import config_context
    from sklearn.linear_model import LogisticRegression

    negatives = [*disliked, *unrated]
    if not liked or not negatives:
        return None
    papers = [*liked, *negatives]
    lexical = LexicalIndex([(p.title, p.abstract) for p in papers])
    model = LogisticRegression(C=10.0, class_weight="balanced", solver="liblinear")  # small, sparse: liblinear
    # The inputs are ours (finite weights, fixed parameters): scikit-learn's checks of them were
    # a fifth of the training time
    with config_context(skip_parameter_validation=True, assume_finite=True):
        model.fit(lexical.unit_rows(), np.array([1] * len(liked) + [0] * len(negatives)))
    coef = model.coef_[0]
    kept = np.argsort(-np.abs(coef))[:KEPT_WORDS]
    words = lexical.words
    return Learned(tuple([words[c] for c in kept.tolist()]), tuple(np.round(coef[kept], 5).tolist()),
                   round(float(model.intercept_[0]), 5), len(liked) + len(disliked), tuple(p.title for p in liked),
                   toward=_mean_meaning(liked), away=_mean_meaning(disliked))


def _mean_meaning(papers: Sequence[Paper]) -> tuple[float, ...]:
    """The papers' mean vector in meaning, at unit length (empty: no papers, or no encoder)."""
    from . import semantic

    found = semantic.vectors([semantic.paper_text(p.title, p.abstract) for p in papers]) if papers else None
    if found is None:
        return ()
    mean = found.mean(axis=0)
    return tuple(np.round(mean / max(float(np.linalg.norm(mean)), 1e-9), 4).tolist())


@lru_cache(maxsize=16_384)
def _read(text: str) -> Learned:
    return Learned.from_json(text)


def with_learned(subscribers: Sequence[Subscriber], models: dict[str, dict[str, str]]) -> list[Subscriber]:
    """The subscribers with what their ratings taught put on their topics (`models`: address →
    topic name → JSON, as store/ratings.py keeps them); the others as they are."""
    if not models:
        return list(subscribers)
    out = []
    for subscriber in subscribers:
        theirs = models.get(subscriber.email)
        if theirs and any(t.name in theirs for t in subscriber.topics):
            topics = [t.model_copy(update={"learned": _read(theirs[t.name])}) if t.name in theirs else t
                      for t in subscriber.topics]
            subscriber = subscriber.model_copy(update={"topics": topics})
        out.append(subscriber)
    return out
