"""Retraining what a subscriber's ratings of one topic teach (match/learned.py), when they rate,
undo or remove a rating: milliseconds, once per change, never per digest."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..match.learned import train
from ..store.database import Store
from ..store.ratings import Ratings

POOL_DAYS = 14  # the unrated papers set against the liked ones: the last two weeks'
POOL_SIZE = 200

log = logging.getLogger("digest.subscribe")


def retrain(store: Store, email: str, topic: str, now: datetime) -> bool:
    """The topic's model from its ratings as they are now (none left: no model). True if it has one."""
    ratings = Ratings(store)
    theirs = [r for r in ratings.of(email) if r.topic == topic]
    rated = {r.paper for r in theirs}
    papers = {p.id: p for p in store.papers(ids=sorted(rated))} if rated else {}
    liked = [papers[r.paper] for r in theirs if r.value > 0 and r.paper in papers]
    disliked = [papers[r.paper] for r in theirs if r.value < 0 and r.paper in papers]
    # A fixed sample (by id) of recent papers they did not rate: most papers are not for any one topic.
    unrated = sorted((p for p in store.papers(since=now - timedelta(days=POOL_DAYS)) if p.id not in rated),
                     key=lambda p: p.id)[:POOL_SIZE]
    model = train(liked, disliked, unrated)
    ratings.keep_model(email, topic, model.to_json() if model is not None else None, now)
    log.info("a topic's model %s (%d ratings)", "retrained" if model else "removed", len(theirs))
    return model is not None
