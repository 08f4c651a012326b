"""The ledger: every digest recorded before it is sent, and what became of it.

States: `pending` (to send) → `claimed` (a run owns it) → `sending` (the end of its message
is going to the server) → `sent` when the server answers 250 (its papers are then
delivered); or `empty`; or `failed` (a permanent refusal); or `uncertain`: the end of the
message went out and no reply came, so the server may have it (postfix keeps most such
messages: see bench/kill_postfix.py). A run that dies leaves `claimed` digests, which go back
to pending (the server cannot have them), and `sending` ones, which become uncertain. An
uncertain digest counts as delivered for the next window, is never retried in its run, and
is sent once more at most, on a later run, with the same Message-ID (smtp.resend_uncertain).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime, dialect_insert
from .group_commit import GroupCommit
from .identity import ACTIVE_RUNS, known_gone, owner_id

__all__ = ["ACTIVE_RUNS", "COMPLETED", "Entry", "Ledger", "Planned", "SubscriberState", "owner_id",
           "subscriber_key"]

LEASE = timedelta(hours=1)  # a claim that carries no lease (an older version's) is abandoned after this
CLAIM_LEASE = timedelta(minutes=2)  # workers.lease's default
# A digest the server accepted, or may have (uncertain), or that had nothing to send: its papers
# are not offered again and the next window starts after it.
COMPLETED = ("sent", "empty", "uncertain")

_meta = sa.MetaData()
digests = sa.Table(
    "digests", _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subscriber", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("papers", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.Text),
    sa.Column("created_at", UTCTime, nullable=False),
    sa.Column("matched_at", UTCTime, nullable=False),
    sa.Column("updated_at", UTCTime, nullable=False),
    sa.Column("sent_at", UTCTime),
    sa.Column("uncertain_resends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("content", sa.Text),  # the digest as planned (sections, scores, why-lines), JSON
    sa.Column("planned_at", UTCTime),  # when a plan last (re)made it: the scope of a run's claims
    sa.Column("lease_until", UTCTime),  # a claim's end unless its worker renews it
)
subscriber_state = sa.Table(
    "subscriber_state", _meta,
    sa.Column("subscriber", sa.Text, primary_key=True),
    sa.Column("hard_failures", sa.Integer, nullable=False),
    sa.Column("suspended_at", UTCTime),
    sa.Column("suspended_reason", sa.Text),
    sa.Column("unsubscribed_at", UTCTime),
)


_SENDING = sa.text("UPDATE digests SET state = 'sending', updated_at = :t WHERE id = :id")
_SENDING_OWN = sa.text("UPDATE digests SET state = 'sending', updated_at = :t "
                       "WHERE id = :id AND claimed_by = :owner AND state = 'claimed'")


def _mark_sql(is_mark: str, is_sent: str) -> str:
    """The `sending` marks and the digests they carry as sent, in one UPDATE."""
    return (f"UPDATE digests SET state = CASE WHEN {is_mark} THEN 'sending' ELSE 'sent' END, "
            f"sent_at = CASE WHEN {is_mark} THEN sent_at ELSE :t END, "
            f"last_error = CASE WHEN {is_mark} THEN last_error ELSE NULL END, updated_at = :t "
            f"WHERE ({is_mark} AND claimed_by = :owner AND state = 'claimed') OR {is_sent} RETURNING id, state")


_MARK_ONE = sa.text(_mark_sql("id = :mark", "id = :sent"))
_MARK_ALL = sa.text(_mark_sql("id IN :marks", "id IN :sent")).bindparams(
    sa.bindparam("marks", expanding=True), sa.bindparam("sent", expanding=True))
_SENT = sa.text("UPDATE digests SET state = 'sent', sent_at = :t, updated_at = :t, last_error = NULL WHERE id = :id")


@dataclass(frozen=True)
class _Mark:
    """One `sending` mark waiting for its commit."""
    digest_id: int
    now: datetime
    owner: str | None
    accepted: tuple[Entry, ...]


@dataclass(frozen=True)
class Entry:
    id: int
    subscriber: str
    period: str
    message_id: str
    papers: tuple[str, ...]
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    matched_at: datetime
    sent_at: datetime | None
    uncertain_resends: int = 0
    content: str | None = None
    planned_at: datetime | None = None
    claimed_by: str | None = None  # the worker that holds it, or last held it


@dataclass(frozen=True)
class Planned:
    """A digest a plan records: pending (to send) or empty (nothing matched)."""

    subscriber: str
    period: str
    message_id: str
    papers: tuple[str, ...]
    content: str | None
    state: str = "pending"


@dataclass(frozen=True)
class SubscriberState:
    hard_failures: int = 0
    suspended_at: datetime | None = None
    suspended_reason: str | None = None
    unsubscribed_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.suspended_at is None and self.unsubscribed_at is None

    def status(self, receiving: bool) -> str:
        """What `digest status`, `digest subscribers list`, /admin and the manage page call it:
        unsubscribed (their own word first), suspended (for bounces), paused (by their settings,
        or until a day: `receiving` is deliver.schedule.receiving) or active."""
        return ("unsubscribed" if self.unsubscribed_at else "suspended" if self.suspended_at
                else "paused" if not receiving else "active")


def _owner_gone(owner: str | None, lease_until: datetime | None, updated_at: datetime, now: datetime) -> bool:
    """A holder known to have ended is gone at once; any other when its lease is over."""
    known = known_gone(owner)
    if known is not None:
        return known
    return now > (lease_until or updated_at + LEASE)


def _entry(row: sa.Row) -> Entry:
    return Entry(row.id, row.subscriber, row.period, row.message_id, tuple(json.loads(row.papers)), row.state,
                 row.attempts, row.last_error, row.created_at, row.matched_at, row.sent_at, row.uncertain_resends,
                 row.content, row.planned_at, row.claimed_by)


def subscriber_key(email: str) -> str:
    """How the ledger keys a subscriber: the address, trimmed and lower-cased; a domain
    written in Unicode as the configuration keeps it (IDNA: `exämple.org` is `xn--exmple-cua.org`)."""
    if email.isascii():
        return email.strip().lower()
    from ..config import email_address

    try:
        return email_address(email.strip()).lower()
    except ValueError:  # not an address SMTP can carry (a non-ASCII local part): as written
        return email.strip().lower()


class Ledger:
    """Digests and subscriber states, in the store's database; each change one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        # Threads' `sending` marks that arrive together share a commit (see group_commit).
        self._marks: GroupCommit[_Mark, bool] = GroupCommit(self._mark_all)

    def _write(self, work):  # type: ignore[no-untyped-def]
        return self.store.write(work)

    def _read(self, work):  # type: ignore[no-untyped-def]
        return self.store.read(work)

    # -- recording

    def record(self, subscriber: str, period: str, message_id: str, papers: Iterable[str], now: datetime,
               state: str = "pending") -> tuple[Entry, bool]:
        """The digest of `subscriber` for `period`: recorded now, or as it already was.
        Returns (entry, created)."""
        ids = json.dumps(list(papers))

        def work(conn: Connection) -> tuple[Entry, bool]:
            # Never check-then-insert: the first worker to insert it records it, the others read it.
            made = conn.execute(dialect_insert(conn)(digests).values(
                subscriber=subscriber_key(subscriber), period=period, message_id=message_id, papers=ids, state=state,
                attempts=0, created_at=now, matched_at=now, updated_at=now).on_conflict_do_nothing(
                index_elements=[digests.c.subscriber, digests.c.period]).returning(digests)).first()
            if made is not None:
                return _entry(made), True
            row = conn.execute(sa.select(digests).where(
                digests.c.subscriber == subscriber_key(subscriber), digests.c.period == period)).one()
            return _entry(row), False

        return self._write(work)

    def claim(self, digest_id: int, now: datetime, owner: str | None = None, lease: timedelta = CLAIM_LEASE) -> bool:
        """Take a pending digest for this run; False if another run has it or it is done."""
        result = self._write(lambda conn: conn.execute(digests.update().where(
            digests.c.id == digest_id, digests.c.state == "pending").values(
            state="claimed", claimed_by=owner or owner_id(), updated_at=now, lease_until=now + lease)))
        return result.rowcount == 1

    def uncertain(self, digest_id: int, error: str, now: datetime) -> None:
        """The end of the message went out and no reply came: the server may have it."""
        self._write(lambda conn: conn.execute(digests.update().where(digests.c.id == digest_id).values(
            state="uncertain", claimed_by=None, last_error=error, attempts=digests.c.attempts + 1, updated_at=now)))

    def sending(self, digest_id: int, now: datetime, owner: str | None = None, *,
                accepted: Sequence[Entry] = ()) -> bool:
        """The end of the message is about to go out. With `owner`, only while the claim is still
        its own: False when its lease ran out and another worker took it over (do not send).
        `accepted`: digests the server has accepted since the last commit (see `sent`), recorded
        in the same transaction: one commit per digest sent, fewer when several threads mark
        at once (their marks share a commit; each returns once its own is committed)."""
        return self._marks.submit(_Mark(digest_id, now, owner, tuple(accepted)))

    def _mark_all(self, marks: Sequence[_Mark]) -> list[bool]:
        owners = {m.owner for m in marks}
        if len(owners) == 1 and None not in owners and self.store.returning:
            # One statement, one round trip: the marks and the digests they carry as sent.
            stamp = UTCTime().process_bind_param(max(m.now for m in marks), None)
            ids, sent = [m.digest_id for m in marks], [e.id for m in marks for e in m.accepted]
            if len(ids) == 1 and len(sent) <= 1:  # the usual case, without expanding lists
                rows = self.store.write_alone(_MARK_ONE, {"mark": ids[0], "sent": sent[0] if sent else -1,
                                                          "owner": marks[0].owner, "t": stamp})
            else:
                rows = self.store.write_alone(_MARK_ALL, {"marks": ids, "sent": sent, "owner": marks[0].owner,
                                                          "t": stamp})
            marked = {row.id for row in rows if row.state == "sending"}
            return [m.digest_id in marked for m in marks]

        def work(conn: Connection) -> list[bool]:
            stamps = [UTCTime().process_bind_param(m.now, None) for m in marks]
            sent = [{"id": e.id, "t": t} for m, t in zip(marks, stamps) for e in m.accepted]
            if sent:
                conn.execute(_SENT, sent)
            return [conn.execute(_SENDING if m.owner is None else _SENDING_OWN,
                                 {"id": m.digest_id, "t": t, "owner": m.owner}).rowcount == 1
                    for m, t in zip(marks, stamps)]

        return self._write(work)

    def sent(self, entry: Entry, now: datetime) -> None:
        """Accepted by the server: its papers are delivered with it (`delivered` reads the papers
        of sent digests) and the subscriber's refusal count starts again, in one commit. A
        worker records it with its next digest's `sending` mark instead, or at its pass's end
        (`sent_all`)."""
        self.sent_all([entry], now)

    def sent_all(self, entries: Sequence[Entry], now: datetime, *, subscribers: Sequence[str] = ()) -> None:
        """Accepted digests not yet recorded, and the refusal counts of `subscribers` (those
        digests reached) reset: one commit."""
        keys = sorted({subscriber_key(e) for e in subscribers} | {e.subscriber for e in entries})
        if not keys:
            return
        stamp = UTCTime().process_bind_param(now, None)

        def work(conn: Connection) -> None:
            if entries:
                conn.execute(_SENT, [{"id": e.id, "t": stamp} for e in entries])
            conn.execute(subscriber_state.update().where(
                subscriber_state.c.subscriber.in_(keys), subscriber_state.c.hard_failures > 0).values(hard_failures=0))

        self._write(work)

    def deferred(self, digest_id: int, error: str, now: datetime) -> None:
        """A transient failure: back to pending, for a later attempt."""
        self._write(lambda conn: conn.execute(digests.update().where(digests.c.id == digest_id).values(
            state="pending", claimed_by=None, lease_until=None, last_error=error, attempts=digests.c.attempts + 1, updated_at=now)))

    def failed(self, entry: Entry, error: str, now: datetime, suspend_after: int) -> bool:
        """A permanent refusal; True if the subscriber is now suspended."""

        def work(conn: Connection) -> bool:
            conn.execute(digests.update().where(digests.c.id == entry.id).values(
                state="failed", last_error=error, attempts=digests.c.attempts + 1, updated_at=now))
            current = _state(conn, entry.subscriber)
            failures = current.hard_failures + 1
            suspend = failures >= suspend_after and current.suspended_at is None
            _upsert_state(conn, entry.subscriber, hard_failures=failures,
                          **({"suspended_at": now, "suspended_reason": error} if suspend else {}))
            return suspend

        return self._write(work)

    def recover(self, now: datetime) -> int:
        """Digests left behind by runs that died; returns how many.

        `claimed` ones go back to pending: the end of their message never went out, and a
        server discards a message that never ended. `sending` ones become uncertain: the end of
        the message may have reached the server, which then delivers it (measured with
        postfix), so they are sent again only under `smtp.resend_uncertain`."""

        def work(conn: Connection) -> int:
            back = 0
            rows = conn.execute(sa.select(digests.c.id, digests.c.state, digests.c.claimed_by, digests.c.updated_at,
                                          digests.c.lease_until).where(
                digests.c.state.in_(("claimed", "sending"))).with_for_update(skip_locked=True)).all()
            for row in rows:
                if _owner_gone(row.claimed_by, row.lease_until, row.updated_at, now):
                    if row.state == "claimed":
                        values = {"state": "pending", "last_error": "its run stopped before sending it: sent again"}
                    else:
                        values = {"state": "uncertain", "last_error": "its run stopped after the end of the message "
                                  "went to the server, before its reply: the server may have it"}
                    conn.execute(digests.update().where(digests.c.id == row.id, digests.c.state == row.state).values(
                        claimed_by=None, lease_until=None, updated_at=now, **values))
                    back += 1
            return back

        return self._write(work)

    def uncertain_to_resend(self, since: datetime) -> list[int]:
        """Uncertain digests of slots since `since` not yet sent again (smtp.resend_uncertain)."""
        return [int(i) for i in self._read(lambda conn: conn.scalars(sa.select(digests.c.id).where(
            digests.c.state == "uncertain", digests.c.uncertain_resends < 1, digests.c.created_at >= since)).all())]

    def left_behind(self, now: datetime) -> list[Entry]:
        """The claimed digests of runs that died, which `recover` gives back to pending: read only."""
        rows = self._read(lambda conn: conn.execute(sa.select(digests).where(digests.c.state == "claimed")).all())
        return [_entry(r) for r in rows if _owner_gone(r.claimed_by, r.lease_until, r.updated_at, now)]

    # -- plans and workers: a slot planned once, in batches; claims in batches, with leases

    def plan(self, rows: Sequence[Planned], rematch: Sequence[tuple[int, Planned]], resend: Sequence[int],
             now: datetime) -> None:
        """One batch of a plan, in one transaction: new digests recorded (the first planner to
        insert one wins), pending ones left by an earlier run matched anew, uncertain ones queued
        to go once more (their papers and Message-ID kept)."""

        def work(conn: Connection) -> None:
            if rows:
                conn.execute(dialect_insert(conn)(digests).on_conflict_do_nothing(
                    index_elements=[digests.c.subscriber, digests.c.period]), [
                    {"subscriber": subscriber_key(r.subscriber), "period": r.period, "message_id": r.message_id,
                     "papers": json.dumps(list(r.papers)), "content": r.content, "state": r.state, "attempts": 0,
                     "created_at": now, "matched_at": now, "updated_at": now, "planned_at": now} for r in rows])
            for digest_id, r in rematch:
                conn.execute(digests.update().where(digests.c.id == digest_id, digests.c.state == "pending").values(
                    papers=json.dumps(list(r.papers)), content=r.content, state=r.state, matched_at=now,
                    updated_at=now, planned_at=now))
            if resend:
                conn.execute(digests.update().where(digests.c.id.in_(resend), digests.c.state == "uncertain",
                                                    digests.c.uncertain_resends < 1).values(
                    state="pending", planned_at=now, updated_at=now,
                    uncertain_resends=digests.c.uncertain_resends + 1))

        def run() -> None:  # again if PostgreSQL chose it as a deadlock's victim (rolled back whole)
            with self.engine.begin() as conn:
                work(conn)

        self.store._guard(lambda: self.store._retrying(run))

    def claim_batch(self, owner: str, now: datetime, *, limit: int, planned_since: datetime,
                    lease: timedelta = CLAIM_LEASE, subscribers: Sequence[str] | None = None) -> list[Entry]:
        """Up to `limit` pending digests of plans made since `planned_since`, claimed for `owner`
        in one statement. PostgreSQL: rows another worker is claiming are skipped, not waited for
        (FOR UPDATE SKIP LOCKED); SQLite: writers take turns (BEGIN IMMEDIATE)."""
        chosen = sa.select(digests.c.id).where(digests.c.state == "pending", digests.c.planned_at >= planned_since)
        if subscribers is not None:
            chosen = chosen.where(digests.c.subscriber.in_([subscriber_key(e) for e in subscribers]))
        # A CTE, evaluated once: as a plain IN (subquery), PostgreSQL may scan the subquery again
        # while updating, and SKIP LOCKED then hands it rows past the LIMIT.
        batch = chosen.order_by(digests.c.id).limit(limit).with_for_update(skip_locked=True).cte("chosen")
        query = digests.update().where(digests.c.id.in_(sa.select(batch.c.id)), digests.c.state == "pending").values(
            state="claimed", claimed_by=owner, updated_at=now, lease_until=now + lease).returning(*digests.c)
        return sorted((_entry(r) for r in self.store.write_alone(query, {})), key=lambda e: e.id)

    def waiting(self, planned_since: datetime, subscribers: Sequence[str] | None = None) -> list[Entry]:
        """The digests of plans made since `planned_since` that no worker holds: still to send."""
        query = sa.select(digests).where(digests.c.state == "pending", digests.c.planned_at >= planned_since)
        if subscribers is not None:
            query = query.where(digests.c.subscriber.in_([subscriber_key(e) for e in subscribers]))
        return [_entry(r) for r in self._read(lambda conn: conn.execute(query.order_by(digests.c.id)).all())]

    def renew(self, owner: str, until: datetime) -> int:
        """The worker is alive: its claims are held until `until`."""
        return self._write(lambda conn: conn.execute(digests.update().where(
            digests.c.claimed_by == owner, digests.c.state.in_(("claimed", "sending"))).values(
            lease_until=until)).rowcount)

    def release(self, owner: str, now: datetime) -> int:
        """Claims the worker will not send (it was stopped): back to pending at once."""
        return self._write(lambda conn: conn.execute(digests.update().where(
            digests.c.claimed_by == owner, digests.c.state == "claimed").values(
            state="pending", claimed_by=None, lease_until=None, updated_at=now)).rowcount)

    def in_progress(self, planned_since: datetime, now: datetime, subscribers: Sequence[str] | None = None, *,
                    besides: str = "") -> int:
        """Digests of current plans that another worker (not `besides`) holds under a live lease."""
        query = sa.select(sa.func.count()).select_from(digests).where(
            digests.c.state.in_(("claimed", "sending")), digests.c.planned_at >= planned_since,
            digests.c.lease_until >= now, digests.c.claimed_by != besides)
        if subscribers is not None:
            query = query.where(digests.c.subscriber.in_([subscriber_key(e) for e in subscribers]))
        return self.store.read(lambda conn: conn.scalar(query), alone=True) or 0

    def cancel(self, digest_id: int, why: str, now: datetime) -> None:
        """A planned digest that is not to go (its subscriber left or paused since the plan)."""
        self._write(lambda conn: conn.execute(digests.update().where(
            digests.c.id == digest_id, digests.c.state.in_(("pending", "claimed"))).values(
            state="cancelled", claimed_by=None, lease_until=None, last_error=why, updated_at=now)))

    def states(self, subscribers: Sequence[str]) -> dict[str, SubscriberState]:
        """Subscriber states of many at once, keyed by the addresses as given (those with none
        are active)."""
        keys = {e: subscriber_key(e) for e in subscribers}
        rows = self.store.read(lambda conn: conn.execute(sa.select(subscriber_state).where(
            subscriber_state.c.subscriber.in_(set(keys.values())))).all(), alone=True)
        found = {r.subscriber: _row_state(r) for r in rows}
        return {e: found.get(k, SubscriberState()) for e, k in keys.items()}

    def summaries(self, subscribers: Sequence[str]) -> dict[str, tuple[Entry | None, int]]:
        """Each subscriber's latest digest and how many were sent, keyed by the addresses as
        given: two queries for all of them (callers pass a few hundred at a time)."""
        keys = {e: subscriber_key(e) for e in subscribers}
        wanted = sorted(set(keys.values()))
        newest = sa.select(sa.func.max(digests.c.id)).where(digests.c.subscriber.in_(wanted)).group_by(
            digests.c.subscriber)
        latest = {r.subscriber: _entry(r) for r in self._read(lambda conn: conn.execute(
            sa.select(digests).where(digests.c.id.in_(newest))).all())}
        sent = dict(self._read(lambda conn: conn.execute(
            sa.select(digests.c.subscriber, sa.func.count()).where(
                digests.c.subscriber.in_(wanted), digests.c.state == "sent").group_by(digests.c.subscriber)).all()))
        return {e: (latest.get(k), int(sent.get(k, 0))) for e, k in keys.items()}

    def entries_for(self, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Entry]:
        """The recorded digests among (subscriber, period) pairs, keyed by the pairs as given."""
        keys = {(subscriber_key(e), p): (e, p) for e, p in wanted}
        rows = self._read(lambda conn: conn.execute(sa.select(digests).where(
            digests.c.subscriber.in_(sorted({e for e, _ in keys})),
            digests.c.period.in_(sorted({p for _, p in keys})))).all())
        return {keys[r.subscriber, r.period]: _entry(r) for r in rows if (r.subscriber, r.period) in keys}

    def window_starts(self, subscribers: Sequence[str]) -> dict[str, datetime]:
        """For many subscribers at once: when each one's last completed digest was matched
        (papers first seen since are new), keyed by the addresses as given."""
        keys = {e: subscriber_key(e) for e in subscribers}
        query = sa.select(digests.c.subscriber, sa.func.max(digests.c.matched_at)).where(
            digests.c.subscriber.in_(set(keys.values())), digests.c.state.in_(COMPLETED)).group_by(
            digests.c.subscriber)
        found = dict(self._read(lambda conn: conn.execute(query).all()))
        return {e: found[k] for e, k in keys.items() if found.get(k) is not None}

    def delivered_to(self, subscribers: Sequence[str], since: datetime | None = None) -> dict[str, set[str]]:
        """For many subscribers at once: the papers of their sent digests (matched since
        `since`, when given), keyed by the addresses as given."""
        keys = {e: subscriber_key(e) for e in subscribers}
        query = sa.select(digests.c.subscriber, digests.c.papers).where(
            digests.c.subscriber.in_(set(keys.values())), digests.c.state.in_(("sent", "uncertain")))
        if since is not None:
            query = query.where(digests.c.matched_at >= since)
        found: dict[str, set[str]] = {}
        for subscriber, papers in self._read(lambda conn: conn.execute(query).all()):
            found.setdefault(subscriber, set()).update(json.loads(papers))
        return {e: found[k] for e, k in keys.items() if k in found}

    # -- subscribers

    def unsubscribe(self, subscriber: str, now: datetime) -> datetime:
        """Unsubscribe (again): returns since when, which a repeated request leaves as it was.
        One statement, so a mail provider's burst of one-click requests costs one round trip each."""
        def work(conn: Connection) -> datetime:
            values = {"subscriber": subscriber_key(subscriber), "hard_failures": 0, "unsubscribed_at": now}
            statement = dialect_insert(conn)(subscriber_state).values(**values)
            kept = sa.func.coalesce(subscriber_state.c.unsubscribed_at, statement.excluded.unsubscribed_at)
            return conn.execute(statement.on_conflict_do_update(
                index_elements=[subscriber_state.c.subscriber], set_={"unsubscribed_at": kept}).returning(
                subscriber_state.c.unsubscribed_at)).scalar_one()
        return self.store.write(work, alone=True)

    def resubscribe(self, subscriber: str) -> None:
        """Undo an unsubscription (the reader's own request); a suspension for bounces stays."""
        self._write(lambda conn: _upsert_state(conn, subscriber, unsubscribed_at=None))

    def suspend(self, subscriber: str, reason: str, now: datetime) -> bool:
        """Suspend by hand (the admin pages): no digests until `resume`. A suspension already
        there (for bounces, say) is kept as it was, reason and time; its refusal count stays.
        True if this suspended them."""
        def work(conn: Connection) -> bool:
            if _state(conn, subscriber).suspended_at is not None:
                return False
            _upsert_state(conn, subscriber, suspended_at=now, suspended_reason=reason)
            return True
        return bool(self._write(work))

    def resume(self, subscriber: str) -> None:
        """Lift a suspension (and an unsubscription): the subscriber gets digests again."""
        self._write(lambda conn: _upsert_state(conn, subscriber, hard_failures=0, suspended_at=None,
                                               suspended_reason=None, unsubscribed_at=None))

    def state(self, subscriber: str) -> SubscriberState:
        return self._read(lambda conn: _state(conn, subscriber))

    def forget(self, subscriber: str, pseudonym: str, now: datetime, *, still_listed: bool = False) -> int:
        """A subscriber's own request to be deleted: their digests keep only what counts
        (period, state, times, papers) under `pseudonym`, never their address, content or
        errors; their state goes. `still_listed`: subscribers.yaml lists the address, so a
        sync would bring it back: it stays unsubscribed. Returns the digests anonymised."""
        key = subscriber_key(subscriber)

        def work(conn: Connection) -> int:
            changed = conn.execute(digests.update().where(digests.c.subscriber == key).values(
                subscriber=pseudonym, message_id="<deleted>", content=None, last_error=None, claimed_by=None,
                updated_at=now)).rowcount
            conn.execute(subscriber_state.delete().where(subscriber_state.c.subscriber == key))
            if still_listed:
                _upsert_state(conn, subscriber, unsubscribed_at=now)
            return int(changed)
        return int(self._write(work))

    # -- reading

    def entry(self, subscriber: str, period: str) -> Entry | None:
        row = self._read(lambda conn: conn.execute(sa.select(digests).where(
            digests.c.subscriber == subscriber_key(subscriber), digests.c.period == period)).first())
        return _entry(row) if row is not None else None

    def entries_exist(self) -> bool:
        return self._read(lambda conn: conn.scalar(sa.select(digests.c.id).limit(1))) is not None

    def entries(self, subscriber: str | None = None) -> list[Entry]:
        query = sa.select(digests).order_by(digests.c.created_at, digests.c.id)
        if subscriber:
            query = query.where(digests.c.subscriber == subscriber_key(subscriber))
        return [_entry(r) for r in self._read(lambda conn: conn.execute(query).all())]

    def window_start(self, subscriber: str) -> datetime | None:
        """When the subscriber's last completed digest was matched (papers first seen since are new)."""
        return self.window_starts([subscriber]).get(subscriber)

    def delivered(self, subscriber: str, among: Iterable[str] | None = None, since: datetime | None = None) -> set[str]:
        """Papers in the subscriber's sent digests (matched since `since`, when given)."""
        found = self.delivered_to([subscriber], since).get(subscriber, set())
        return found if among is None else found & set(among)


def _state(conn: Connection, subscriber: str) -> SubscriberState:
    row = conn.execute(sa.select(subscriber_state).where(subscriber_state.c.subscriber == subscriber_key(subscriber))).first()
    return SubscriberState() if row is None else _row_state(row)


def _row_state(row: sa.Row) -> SubscriberState:
    return SubscriberState(row.hard_failures, row.suspended_at, row.suspended_reason, row.unsubscribed_at)


def _upsert_state(conn: Connection, subscriber: str, **values) -> None:  # type: ignore[no-untyped-def]
    statement = dialect_insert(conn)(subscriber_state).values(subscriber=subscriber_key(subscriber), **{"hard_failures": 0, **values})
    conn.execute(statement.on_conflict_do_update(index_elements=[subscriber_state.c.subscriber], set_=values))


