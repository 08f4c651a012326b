"""Topics' example papers: their text, and which of them each topic's model was trained with.

An example's text comes from `papers` when the store has it (gathered like any other paper),
else from `example_papers`, which the arXiv API fills by id (gather/by_id.py): kept apart, so
an example never becomes a newly seen paper. `topic_examples` holds, per subscriber and topic,
the examples its model was last trained with — the settled ones: found, or unknown to arXiv;
one that could not be fetched is left out, so it is asked for again next time. The topics that
come in are compared with it (subscribe/examples.py): one query, a set comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..models import Paper
from .database import JSONText, Store, UTCTime, dialect_insert
from .ledger import subscriber_key

BATCH = 500  # ids or subscribers per query

_meta = sa.MetaData()
example_papers = sa.Table(
    "example_papers", _meta,
    sa.Column("id", sa.Text, primary_key=True),  # the arXiv id without version
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False),
    sa.Column("authors", JSONText, nullable=False),
    sa.Column("categories", JSONText, nullable=False),
    sa.Column("found", sa.Integer, nullable=False),  # 0: arXiv does not know the id
    sa.Column("checked_at", UTCTime, nullable=False),
)
topic_examples = sa.Table(
    "topic_examples", _meta,
    sa.Column("subscriber", sa.Text, primary_key=True),  # the address trimmed and lower-cased
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("examples", JSONText, nullable=False),  # ids, sorted
    sa.Column("trained_at", UTCTime, nullable=False),
)


@dataclass(frozen=True)
class Known:
    """What the store knows of some example ids: the papers, and the ids arXiv does not know.
    An id in neither has not been asked for yet (or could not be)."""

    papers: dict[str, Paper]
    unknown: frozenset[str]


def _paper(row: sa.Row) -> Paper:
    return Paper(id=row.id, title=row.title, url=f"https://arxiv.org/abs/{row.id}", abstract=row.abstract,
                 authors=tuple(row.authors or ()), categories=tuple(row.categories or ()))


class Examples:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the papers

    def known(self, ids: Iterable[str]) -> Known:
        """The text of these examples: from `papers` first, then from those fetched by id."""
        wanted = sorted(set(ids))
        papers = {p.id: p for p in self.store.papers(ids=wanted)} if wanted else {}
        rest = [i for i in wanted if i not in papers]
        unknown: set[str] = set()

        def rows(conn: Connection) -> list[sa.Row]:
            found: list[sa.Row] = []
            for start in range(0, len(rest), BATCH):
                found += conn.execute(sa.select(example_papers).where(
                    example_papers.c.id.in_(rest[start:start + BATCH]))).all()
            return found

        for row in self.store.read(rows) if rest else []:
            if row.found:
                papers[row.id] = _paper(row)
            else:
                unknown.add(row.id)
        return Known(papers, frozenset(unknown))

    def keep(self, found: Sequence[Paper], unknown: Iterable[str], now: datetime) -> None:
        """What arXiv said: these papers, and these ids it does not know (a later answer replaces
        an earlier one)."""
        rows = [{"id": p.id, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
                 "categories": list(p.categories), "found": 1, "checked_at": now} for p in found]
        rows += [{"id": i, "title": "", "abstract": "", "authors": [], "categories": [], "found": 0, "checked_at": now}
                 for i in sorted(set(unknown))]
        if not rows:
            return

        def work(conn: Connection) -> None:
            insert = dialect_insert(conn)(example_papers)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[example_papers.c.id],
                set_={name: insert.excluded[name] for name in
                      ("title", "abstract", "authors", "categories", "found", "checked_at")}), rows)
        self.store.write(work)

    # -- which examples each topic's model was trained with

    def trained_with(self, subscribers: Sequence[str] | None = None) -> dict[str, dict[str, frozenset[str]]]:
        """address key → topic → the examples its model was last trained with; for these
        subscribers, or (None) everyone's in one query."""
        def rows(conn: Connection, chunk: list[str] | None) -> list[sa.Row]:
            query = sa.select(topic_examples.c.subscriber, topic_examples.c.topic, topic_examples.c.examples)
            if chunk is not None:
                query = query.where(topic_examples.c.subscriber.in_(chunk))
            return list(conn.execute(query).all())

        keys = None if subscribers is None else sorted({subscriber_key(e) for e in subscribers})
        chunks: list[list[str] | None] = [None] if keys is None else [
            keys[start:start + BATCH] for start in range(0, len(keys), BATCH)]
        found: dict[str, dict[str, frozenset[str]]] = {}
        for chunk in chunks:
            for row in self.store.read(partial(rows, chunk=chunk)):
                found.setdefault(row.subscriber, {})[row.topic] = frozenset(row.examples or ())
        return found

    def record(self, subscriber: str, topic: str, examples: Iterable[str], now: datetime) -> None:
        """The examples the topic's model was trained with now (none: the record goes)."""
        key, ids = subscriber_key(subscriber), sorted(set(examples))

        def work(conn: Connection) -> None:
            if not ids:
                conn.execute(topic_examples.delete().where(topic_examples.c.subscriber == key,
                                                           topic_examples.c.topic == topic))
                return
            insert = dialect_insert(conn)(topic_examples).values(subscriber=key, topic=topic, examples=ids,
                                                                 trained_at=now)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[topic_examples.c.subscriber, topic_examples.c.topic],
                set_={"examples": insert.excluded.examples, "trained_at": insert.excluded.trained_at}))
        self.store.write(work)

    def forget(self, subscriber: str) -> int:
        """Their records (they deleted themselves); the example papers are public, and stay."""
        key = subscriber_key(subscriber)
        return int(self.store.write(lambda conn: conn.execute(
            topic_examples.delete().where(topic_examples.c.subscriber == key)).rowcount))
