"""Named leases in the database: one process at a time plans a slot or fetches, across
machines. A lease is held until its time runs out unless its holder renews it, so a holder
that dies frees it by itself; one known to have ended (same pid namespace) frees it at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert
from .identity import ACTIVE_RUNS, known_gone, owner_id

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
        """Take (or renew) the lease `name` for `owner`; False while another holds it. One
        statement: taken when free, expired or already ours; a holder known to have ended
        (this machine, same pid namespace) is cleared and the lease taken."""

        def work(conn: Connection) -> bool:
            insert = dialect_insert(conn)(locks).values(name=name, owner=owner, until=now + lease)
            taken = conn.execute(insert.on_conflict_do_update(
                index_elements=[locks.c.name], set_={"owner": owner, "until": now + lease},
                where=sa.or_(locks.c.until < now, locks.c.owner == owner)).returning(locks.c.owner)).first()
            if taken is not None:
                return True
            holder = conn.scalar(sa.select(locks.c.owner).where(locks.c.name == name))
            if holder is not None and known_gone(holder):
                conn.execute(locks.update().where(locks.c.name == name, locks.c.owner == holder).values(
                    owner=owner, until=now + lease))
                return conn.scalar(sa.select(locks.c.owner).where(locks.c.name == name)) == owner
            return False

        return self._write(work)

    @contextmanager
    def held(self, name: str, now: datetime, lease: timedelta) -> Iterator[bool]:
        """The lease `name` for this process while the block runs: True if it was taken,
        False if another process holds it (the block then does nothing of its work)."""
        run = f"{name}-{uuid.uuid4().hex[:12]}"
        owner = owner_id(run)
        if not self.acquire(name, owner, now, lease):
            yield False
            return
        ACTIVE_RUNS.add(run)  # while it is listed, this process is known to hold it
        try:
            yield True
        finally:
            ACTIVE_RUNS.discard(run)
            self.release(name, owner)

    def release(self, name: str, owner: str) -> None:
        self._write(lambda conn: conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner)))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        row = self.store.read(lambda conn: conn.execute(sa.select(locks).where(locks.c.name == name)).first())
        return (row.owner, row.until) if row is not None else None

    def _write(self, work):  # type: ignore[no-untyped-def]
        return self.store.write(work)
