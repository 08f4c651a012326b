"""What readers said about the papers of their digests: "more like this" (+1) or "not for me"
(-1), from the two links under each paper of a topic.

One row per subscriber and paper: rating a paper again replaces the rating (a changed mind,
or the same link followed twice, is still one rating). The topic is the one the paper was
under in that digest (the learning from ratings is per topic). Subscribers are keyed as
everywhere else: the address trimmed and lower-cased; deleting oneself removes every rating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert
from .ledger import subscriber_key

MORE, LESS = 1, -1

_meta = sa.MetaData()
topic_models = sa.Table(
    "topic_models", _meta,
    sa.Column("subscriber", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("trained_at", UTCTime, nullable=False),
)
ratings = sa.Table(
    "ratings", _meta,
    sa.Column("subscriber", sa.Text, primary_key=True),  # the address trimmed and lower-cased
    sa.Column("paper_id", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("value", sa.Integer, nullable=False),  # +1 more like this, -1 not for me
    sa.Column("rated_at", UTCTime, nullable=False),
)


@dataclass(frozen=True)
class Rating:
    subscriber: str
    paper: str
    topic: str
    value: int
    rated_at: datetime


def _rating(row: sa.Row) -> Rating:
    return Rating(row.subscriber, row.paper_id, row.topic, row.value, row.rated_at)


class Ratings:
    def __init__(self, store: Store) -> None:
        self.store = store

    def rate(self, subscriber: str, paper: str, topic: str, value: int, now: datetime) -> bool:
        """Record the rating (replacing theirs of the same paper); False when it was already
        exactly so (the same link followed again: nothing changes, not even its time)."""
        if value not in (MORE, LESS):
            raise ValueError(f"a rating is {MORE} or {LESS}, not {value!r}")
        key = subscriber_key(subscriber)

        def work(conn: Connection) -> bool:
            insert = dialect_insert(conn)(ratings).values(subscriber=key, paper_id=paper, topic=topic, value=value,
                                                          rated_at=now)
            changed = conn.execute(insert.on_conflict_do_update(
                index_elements=[ratings.c.subscriber, ratings.c.paper_id],
                set_={"topic": insert.excluded.topic, "value": insert.excluded.value,
                      "rated_at": insert.excluded.rated_at},
                where=sa.or_(ratings.c.topic != insert.excluded.topic, ratings.c.value != insert.excluded.value),
            ).returning(ratings.c.paper_id)).first()
            return changed is not None
        return bool(self.store.write(work))

    def remove(self, subscriber: str, paper: str) -> bool:
        """Take their rating of the paper back; False if there was none."""
        key = subscriber_key(subscriber)
        return bool(self.store.write(lambda conn: conn.execute(ratings.delete().where(
            ratings.c.subscriber == key, ratings.c.paper_id == paper)).rowcount))

    def get(self, subscriber: str, paper: str) -> Rating | None:
        key = subscriber_key(subscriber)
        row = self.store.read(lambda conn: conn.execute(sa.select(ratings).where(
            ratings.c.subscriber == key, ratings.c.paper_id == paper)).first())
        return _rating(row) if row is not None else None

    def of(self, subscriber: str) -> list[Rating]:
        """Their ratings, newest first."""
        key = subscriber_key(subscriber)
        rows = self.store.read(lambda conn: conn.execute(sa.select(ratings).where(ratings.c.subscriber == key).order_by(
            ratings.c.rated_at.desc(), ratings.c.paper_id)).all())
        return [_rating(r) for r in rows]

    def forget(self, subscriber: str) -> int:
        """Every rating of theirs, and what they taught (they deleted themselves); how many went."""
        key = subscriber_key(subscriber)

        def work(conn: Connection) -> int:
            conn.execute(topic_models.delete().where(topic_models.c.subscriber == key))
            return int(conn.execute(ratings.delete().where(ratings.c.subscriber == key)).rowcount)
        return int(self.store.write(work))

    def rename_topic(self, subscriber: str, old: str, new: str) -> int:
        """Their ratings under topic `old` moved to `new` (they renamed it), with what it
        taught; how many moved."""
        key = subscriber_key(subscriber)

        def work(conn: Connection) -> int:
            conn.execute(topic_models.delete().where(topic_models.c.subscriber == key, topic_models.c.topic == new))
            conn.execute(topic_models.update().where(topic_models.c.subscriber == key, topic_models.c.topic == old)
                         .values(topic=new))
            return int(conn.execute(ratings.update().where(ratings.c.subscriber == key, ratings.c.topic == old)
                                    .values(topic=new)).rowcount)
        return int(self.store.write(work))

    # -- what they taught, per topic

    def keep_model(self, subscriber: str, topic: str, model: str | None, now: datetime) -> None:
        """A topic's model as JSON (None: it has none any more)."""
        key = subscriber_key(subscriber)

        def work(conn: Connection) -> None:
            conn.execute(topic_models.delete().where(topic_models.c.subscriber == key, topic_models.c.topic == topic))
            if model is not None:
                conn.execute(topic_models.insert().values(subscriber=key, topic=topic, model=model, trained_at=now))
        self.store.write(work)

    def models(self, subscribers: Sequence[str]) -> dict[str, dict[str, str]]:
        """The topic models of these subscribers: address as given → topic → JSON."""
        keys = {subscriber_key(e): e for e in subscribers}
        found: dict[str, dict[str, str]] = {}
        if not keys or self.store.read(lambda conn: conn.scalar(sa.select(topic_models.c.topic).limit(1))) is None:
            return found  # nobody has rated anything: one question, not one per 500
        def rows(conn: Connection, chunk: list[str]) -> list[sa.Row]:
            return list(conn.execute(sa.select(topic_models).where(topic_models.c.subscriber.in_(chunk))).all())

        every = list(keys)
        for start in range(0, len(every), 500):
            chunk = every[start:start + 500]
            read: list[sa.Row] = self.store.read(partial(rows, chunk=chunk))
            for row in read:
                found.setdefault(keys[row.subscriber], {})[row.topic] = row.model
        return found
