"""Named leases in the database: one process at a time plans a slot or fetches, across
machines. A lease is held until its time runs out unless its holder renews it, so a holder
that dies frees it by itself; one known to have ended (same pid namespace) frees it at once."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert
from .identity import known_gone

_meta = sa.MetaData()
locks = sa.Table(
    "locks", _meta,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("until", UTCTime, nullable=False),
)


class Locks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def acquire(self, name: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Take (or renew) the lease `name` for `owner`; False while another holds it."""

        def work(conn: Connection) -> bool:
            conn.execute(dialect_insert(conn)(locks).values(name=name, owner=owner, until=now + lease)
                         .on_conflict_do_nothing(index_elements=[locks.c.name]))
            row = conn.execute(sa.select(locks).where(locks.c.name == name).with_for_update()).one()
            if row.owner != owner and now <= row.until and not known_gone(row.owner):
                return False
            conn.execute(locks.update().where(locks.c.name == name).values(owner=owner, until=now + lease))
            return True

        return self._write(work)

    def release(self, name: str, owner: str) -> None:
        self._write(lambda conn: conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner)))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        def read() -> tuple[str, datetime] | None:
            with self.store.engine.connect() as conn:
                row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
            return (row.owner, row.until) if row is not None else None

        return self.store._guard(read)

    def _write(self, work):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            with self.store.engine.begin() as conn:
                return work(conn)
        return self.store._guard(run)
