"""Named leases in the database: one process at a time plans a slot or fetches, across
machines. A lease is held until its time runs out unless its holder renews it, so a holder
that dies frees it by itself; one known to have ended (same pid namespace) frees it at once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert
from .heartbeat import Heartbeat
from .identity import ACTIVE_RUNS, known_gone, owner_id

log = logging.getLogger(__name__)

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
    def held(self, name: str, now: datetime, lease: timedelta,
             clock: Callable[[], datetime] | None = None) -> Iterator[bool]:
        """The lease `name` for this process while the block runs: True if it was taken,
        False if another process holds it (the block then does nothing of its work). Renewed
        every third of `lease` by `clock`'s time (default: the real one), so a block that runs
        longer than its lease (a plan of very many subscribers) keeps it; a holder that dies
        stops renewing, and the lease frees itself."""
        run = f"{name}-{uuid.uuid4().hex[:12]}"
        owner = owner_id(run)
        if not self.acquire(name, owner, now, lease):
            yield False
            return
        ACTIVE_RUNS.add(run)  # while it is listed, this process is known to hold it
        clock = clock or (lambda: datetime.now(UTC))
        heartbeat = Heartbeat(lambda: self._renew(name, owner, clock(), lease), lease / 3, f"the {name} lease")
        heartbeat.start()
        try:
            yield True
        finally:
            heartbeat.stop()
            ACTIVE_RUNS.discard(run)
            self.release(name, owner)

    def _renew(self, name: str, owner: str, now: datetime, lease: timedelta) -> None:
        if not self.acquire(name, owner, now, lease):
            log.warning("the %s lease lapsed and another process took it (this one was held up longer than %s)",
                        name, lease)

    def release(self, name: str, owner: str) -> None:
        self._write(lambda conn: conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner)))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        row = self.store.read(lambda conn: conn.execute(sa.select(locks).where(locks.c.name == name)).first())
        return (row.owner, row.until) if row is not None else None

    def _write(self, work):  # type: ignore[no-untyped-def]
        return self.store.write(work)
