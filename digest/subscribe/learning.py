"""Retraining what a subscriber's ratings and examples of one topic teach (match/learned.py):
when they rate, undo or remove a rating, or the topic's examples change (subscribe/examples.py).
Milliseconds, once per change, never per digest."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from ..match.learned import train
from ..models import Paper
from ..store.database import Store
from ..store.examples import Examples, Known
from ..store.ledger import subscriber_key
from ..store.ratings import Ratings

POOL_DAYS = 14  # the unrated papers set against the liked ones: the last two weeks'
POOL_SIZE = 200

log = logging.getLogger("digest.subscribe")


def recent_papers(store: Store, now: datetime) -> list[Paper]:
    """The papers unrated samples are drawn from (read once for many topics)."""
    return store.papers(since=now - timedelta(days=POOL_DAYS))


def retrain(store: Store, email: str, topic: str, now: datetime, *, examples: Collection[str] | None = None,
            known: Known | None = None, recent: Sequence[Paper] | None = None) -> bool:
    """The topic's model from its ratings and examples as they are now (nothing to learn from: no
    model). True if it has one.

    `examples`: the topic's example ids, their text in `known` (the store's, if not given), and
    the settled ones (found, or unknown to arXiv) recorded as what the model was trained with;
    None: the examples it was last trained with (a rating changed). `recent`: the papers of
    the last POOL_DAYS days, when the caller retrains many topics."""
    ratings, kept = Ratings(store), Examples(store)
    theirs = [r for r in ratings.of(email) if r.topic == topic]
    rated = {r.paper for r in theirs}
    papers = {p.id: p for p in store.papers(ids=sorted(rated))} if rated else {}
    liked = [papers[r.paper] for r in theirs if r.value > 0 and r.paper in papers]
    disliked = [papers[r.paper] for r in theirs if r.value < 0 and r.paper in papers]
    changed = examples is not None
    ids = set(examples if examples is not None else
              kept.trained_with([email]).get(subscriber_key(email), {}).get(topic, ()))
    known = known if known is not None else kept.known(ids) if ids else Known({}, frozenset())
    # An example the reader has since rated counts as rated (a "not for me" is the later word).
    given = [known.papers[i] for i in sorted(ids) if i in known.papers and i not in rated]
    # A fixed sample (by id) of recent papers they did not rate: most papers are not for any one topic.
    pool = recent if recent is not None else recent_papers(store, now)
    unrated = sorted((p for p in pool if p.id not in rated and p.id not in ids), key=lambda p: p.id)[:POOL_SIZE]
    model = train([*liked, *given], disliked, unrated)
    if model is not None and given:
        model = replace(model, examples=tuple(p.title for p in given))
    ratings.keep_model(email, topic, model.to_json() if model is not None else None, now)
    if changed and not (model is None and given):
        # Recorded unless the examples found had nothing to be set against (a new store): the
        # topic is then trained again next time.
        kept.record(email, topic, [i for i in ids if i in known.papers or i in known.unknown], now)
    log.info("a topic's model %s (%d rating%s, %d example%s)",
             "retrained" if model else "left out: too little to learn from yet", len(theirs),
             "s" * (len(theirs) != 1), len(given), "s" * (len(given) != 1))
    return model is not None
