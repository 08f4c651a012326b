"""The subscriber directory: every subscriber in the database, with the time their next digest
is due, so what is due is one indexed query, and no process needs every subscriber at once.

Subscribers come from an origin: `config` (subscribers.yaml, synced into the directory once
per change of its text), `admin` (`digest subscribers add` and `import`) and, with the
subscription centre, people who subscribe themselves. A row belongs to one origin, and only
its origin changes or removes it: a reload of subscribers.yaml never undoes a row another
origin holds (the file's entry for that address is then ignored, and counted as shadowed).
A row keeps the subscriber's settings as JSON (`profile`), their effective schedule and time
zone, and `next_due`: the first slot not yet planned (NULL: never, e.g. paused). The planner
asks for the rows whose next_due has come, plans them, and moves next_due on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert, settings_table

BATCH = 500  # rows per query and per transaction

_meta = sa.MetaData()
subscribers = sa.Table(
    "subscribers", _meta,
    sa.Column("key", sa.Text, primary_key=True),  # the address trimmed and lower-cased (the ledger's key)
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("profile", sa.Text, nullable=False),  # the subscriber's settings, JSON
    sa.Column("schedule", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("next_due", UTCTime),
    sa.Column("updated_at", UTCTime, nullable=False),
    # The manage link's generation: a fresh link moves it on; the one before stays valid until
    # manage_previous_until (subscribe/centre.py). Kept across syncs (not in _upsert's columns).
    sa.Column("manage_generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("manage_previous_until", UTCTime),
)


@dataclass(frozen=True)
class Listed:
    """A subscriber as the directory holds them."""

    key: str
    email: str
    origin: str
    profile: str
    schedule: str
    timezone: str
    next_due: datetime | None
    manage_generation: int = 0
    manage_previous_until: datetime | None = None


@dataclass(frozen=True)
class Wanted:
    """A subscriber as their origin has them now (what a sync makes the directory hold)."""

    key: str
    email: str
    profile: str
    schedule: str
    timezone: str
    enabled: bool = True


@dataclass(frozen=True)
class Synced:
    added: int = 0
    changed: int = 0
    removed: int = 0
    skipped: bool = False  # the origin had not changed since the last sync
    shadowed: tuple[str, ...] = ()  # the origin's addresses that another origin holds (left as they are)


def _unchanged(old: sa.Row | None, want: Wanted) -> bool:
    """The directory already holds `want` as it is."""
    return old is not None and (old.profile, old.schedule, old.timezone) == (want.profile, want.schedule, want.timezone)


def _row(origin: str, want: Wanted, old: sa.Row | None, now: datetime,
         first_due: Callable[[str, str], datetime | None]) -> dict:
    """The row that makes the directory hold `want`: next_due kept unless the schedule, time
    zone or pause changed (then `first_due(schedule, timezone)`, or none while paused)."""
    timing_same = (old is not None and (old.schedule, old.timezone) == (want.schedule, want.timezone)
                   and (old.next_due is not None) == want.enabled)
    next_due = old.next_due if timing_same and old is not None else (
        first_due(want.schedule, want.timezone) if want.enabled else None)
    return {"key": want.key, "email": want.email, "origin": origin, "profile": want.profile,
            "schedule": want.schedule, "timezone": want.timezone, "next_due": next_due, "updated_at": now}


def _upsert(conn: Connection, origin: str, rows: Sequence[dict]) -> None:
    """Insert the rows, or update those `origin` already holds; a row another origin holds is
    never overwritten (whoever wrote it last, e.g. a person on the web, keeps it)."""
    insert = dialect_insert(conn)(subscribers)
    conn.execute(insert.on_conflict_do_update(
        index_elements=[subscribers.c.key],
        set_={name: insert.excluded[name] for name in ("email", "profile", "schedule", "timezone", "next_due",
                                                       "updated_at")},
        where=subscribers.c.origin == origin), list(rows))


def _listed(row: sa.Row) -> Listed:
    return Listed(row.key, row.email, row.origin, row.profile, row.schedule, row.timezone, row.next_due,
                  row.manage_generation, row.manage_previous_until)


class Directory:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- syncing an origin

    def fingerprint(self, origin: str) -> str | None:
        """What the origin's subscribers were when last synced (a hash the caller chose)."""
        return self.store.setting(f"subscribers:{origin}")

    def sync(self, origin: str, wanted: Iterable[Wanted], fingerprint: str, now: datetime,
             first_due: Callable[[str, str], datetime | None]) -> Synced:
        """Make the directory hold exactly `wanted` for `origin`: new rows added, changed ones
        updated (next_due recomputed by `first_due(schedule, timezone)` when the schedule, time
        zone or pause changed), rows gone from the origin removed; `fingerprint` is then the
        origin's (the caller skips a sync when it already is). Idempotent: two processes
        syncing at once agree."""
        held, others = {}, set()
        for row in self._read(lambda conn: conn.execute(sa.select(
                subscribers.c.key, subscribers.c.origin, subscribers.c.profile, subscribers.c.schedule,
                subscribers.c.timezone, subscribers.c.next_due)).all()):
            if row.origin == origin:
                held[row.key] = row
            else:
                others.add(row.key)
        rows: list[dict] = []
        added = changed = 0
        seen: set[str] = set()
        shadowed = []
        for want in wanted:
            seen.add(want.key)
            if want.key in others:
                shadowed.append(want.email)
                continue
            old = held.get(want.key)
            if _unchanged(old, want):
                continue
            rows.append(_row(origin, want, old, now, first_due))
            added += old is None
            changed += old is not None
        gone = [key for key in held if key not in seen]

        def write(batch: Sequence[dict], remove: Sequence[str], last: bool) -> Callable[[Connection], None]:
            def work(conn: Connection) -> None:
                if batch:
                    _upsert(conn, origin, batch)
                if remove:
                    conn.execute(subscribers.delete().where(subscribers.c.key.in_(remove),
                                                            subscribers.c.origin == origin))
                if last:
                    insert = dialect_insert(conn)(settings_table).values(key=f"subscribers:{origin}",
                                                                         value=fingerprint)
                    conn.execute(insert.on_conflict_do_update(index_elements=[settings_table.c.key],
                                                              set_={"value": fingerprint}))
            return work

        steps = max(1, -(-len(rows) // BATCH), -(-len(gone) // BATCH))
        for step in range(steps):
            self._write(write(rows[step * BATCH:(step + 1) * BATCH], gone[step * BATCH:(step + 1) * BATCH],
                              step == steps - 1))
        return Synced(added, changed, len(gone), shadowed=tuple(shadowed))

    # -- one origin's rows, changed one by one (admin commands, the subscription centre)

    def origins(self, keys: Sequence[str]) -> dict[str, str]:
        """The origin of each of these subscribers that the directory holds."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH):
            chunk = list(keys[start:start + BATCH])
            found.update(self._read(lambda conn, c=chunk: conn.execute(
                sa.select(subscribers.c.key, subscribers.c.origin).where(subscribers.c.key.in_(c))).all()))
        return found

    def put(self, origin: str, wanted: Sequence[Wanted], now: datetime,
            first_due: Callable[[str, str], datetime | None]) -> tuple[int, int]:
        """Add or update these subscribers for `origin`, BATCH per transaction; a row another
        origin holds is left as it is (callers check `origins` first to say so). Returns
        (added, changed)."""
        added = changed = 0
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start:start + BATCH]

            def work(conn: Connection, chunk: Sequence[Wanted] = chunk) -> tuple[int, int]:
                held = {row.key: row for row in conn.execute(sa.select(
                    subscribers.c.key, subscribers.c.origin, subscribers.c.profile, subscribers.c.schedule,
                    subscribers.c.timezone, subscribers.c.next_due).where(subscribers.c.key.in_([w.key for w in chunk])))}
                rows = []
                for want in chunk:
                    old = held.get(want.key)
                    if old is not None and old.origin != origin or _unchanged(old, want):
                        continue
                    rows.append(_row(origin, want, old, now, first_due))
                if rows:
                    _upsert(conn, origin, rows)
                new = sum(want.key not in held for want in chunk)
                return new, len(rows) - new

            more, updated = self._write(work)
            added, changed = added + more, changed + updated
        return added, changed

    def claim(self, origin: str, want: Wanted, now: datetime,
              first_due: Callable[[str, str], datetime | None]) -> bool:
        """Hold `want` for `origin`, whichever origin held the row before (a subscriber who
        edits their own settings takes their row over: no sync of another origin undoes it).
        False if there is no such subscriber."""
        def work(conn: Connection) -> bool:
            old = conn.execute(sa.select(subscribers).where(subscribers.c.key == want.key)).first()
            if old is None:
                return False
            row = _row(origin, want, old, now, first_due)
            conn.execute(subscribers.update().where(subscribers.c.key == want.key).values(
                {name: value for name, value in row.items() if name != "key"}))
            return True
        return bool(self._write(work))

    def remove(self, origin: str | None, keys: Sequence[str]) -> int:
        """Remove these subscribers if `origin` holds them (None: whichever origin does); how
        many were removed."""
        removed = 0
        for start in range(0, len(keys), BATCH):
            chunk = list(keys[start:start + BATCH])
            removed += self._write(lambda conn, c=chunk: conn.execute(subscribers.delete().where(
                subscribers.c.key.in_(c), sa.true() if origin is None else subscribers.c.origin == origin)).rowcount)
        return removed

    def renew_manage(self, key: str, now: datetime, grace: timedelta) -> int | None:
        """Move the subscriber's manage-link generation on (the previous one valid until
        now + grace); the new generation, or None if there is no such subscriber."""
        return self._write(lambda conn: conn.execute(subscribers.update().where(subscribers.c.key == key).values(
            manage_generation=subscribers.c.manage_generation + 1, manage_previous_until=now + grace).returning(
            subscribers.c.manage_generation)).scalar())

    # -- reading

    def due(self, now: datetime, *, limit: int = BATCH,
            after: tuple[datetime, str] | None = None) -> list[Listed]:
        """Subscribers whose next digest is due by `now`, earliest first (one indexed query);
        `after`: the (next_due, key) of the last row of the previous page."""
        query = sa.select(subscribers).where(subscribers.c.next_due <= now)
        if after is not None:
            query = query.where(sa.tuple_(subscribers.c.next_due, subscribers.c.key) > sa.tuple_(
                sa.literal(after[0], UTCTime), sa.literal(after[1])))
        query = query.order_by(subscribers.c.next_due, subscribers.c.key).limit(limit)
        return self._read(lambda conn: [_listed(row) for row in conn.execute(query)])

    def pages(self, *, size: int = BATCH) -> Iterator[list[Listed]]:
        """Every subscriber, `size` at a time, by key."""
        last: str | None = None
        while True:
            query = sa.select(subscribers).order_by(subscribers.c.key).limit(size)
            if last is not None:
                query = query.where(subscribers.c.key > last)
            page = self._read(lambda conn, q=query: [_listed(row) for row in conn.execute(q)])
            if not page:
                return
            yield page
            last = page[-1].key

    def containing(self, text: str) -> list[Listed]:
        """The subscribers whose settings' JSON holds `text` (a key such as '"examples":'), by
        key: one query, however many subscribers there are."""
        query = sa.select(subscribers).where(subscribers.c.profile.contains(text, autoescape=True)).order_by(
            subscribers.c.key)
        return self._read(lambda conn: [_listed(row) for row in conn.execute(query)])

    def get(self, keys: Sequence[str]) -> dict[str, Listed]:
        found: dict[str, Listed] = {}
        def rows(conn: Connection) -> None:
            for start in range(0, len(keys), BATCH):
                found.update((row.key, _listed(row)) for row in conn.execute(
                    sa.select(subscribers).where(subscribers.c.key.in_(list(keys[start:start + BATCH])))))

        self.store.read(rows, alone=True)
        return found

    def count(self) -> int:
        return int(self._read(lambda conn: conn.scalar(sa.select(sa.func.count()).select_from(subscribers))))

    # -- planning moves on

    def advance(self, moves: Sequence[tuple[str, datetime | None]], now: datetime) -> None:
        """Set each subscriber's next_due (after their slot was planned, or found missed)."""
        for start in range(0, len(moves), BATCH):
            chunk = [{"k": key, "due": due, "t": now} for key, due in moves[start:start + BATCH]]
            self._write(lambda conn, c=chunk: conn.execute(
                subscribers.update().where(subscribers.c.key == sa.bindparam("k")).values(
                    next_due=sa.bindparam("due", type_=UTCTime), updated_at=sa.bindparam("t", type_=UTCTime)), c))

    def _read(self, work):  # type: ignore[no-untyped-def]
        return self.store.read(work)

    def _write(self, work):  # type: ignore[no-untyped-def]
        return self.store.write(work)
