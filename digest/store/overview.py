"""Every subscriber and every pending sign-up as one list, a page at a time (the admin pages,
web/admin.py): searched by address, filtered by state, counted by state, in SQL, so a page
of a list of 100 000 reads its 100 rows and no more.

The list is a UNION of the directory's rows (every origin), with their state from the
ledger's `subscriber_state`, and the unconfirmed sign-ups whose address is not a subscriber
(the newest one per address). A subscriber's state is, first that applies: `unsubscribed`,
`suspended` (for bounces, or by the admin), `paused` (by their settings: disabled, or paused
until a day that has not come in their time zone), else `active`; as the manage page says it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime
from .directory import subscribers
from .ledger import subscriber_key, subscriber_state
from .signups import signups

STATES = ("pending", "active", "paused", "suspended", "unsubscribed")


@dataclass(frozen=True)
class Member:
    """One line of the list: a subscriber, or a pending sign-up (`signup_id` set)."""

    key: str
    email: str
    origin: str  # config, admin, self; a pending sign-up: self
    state: str
    hard_failures: int = 0
    suspended_reason: str | None = None
    signup_id: str | None = None
    signed_up_at: datetime | None = None


def _text(value: str) -> sa.ColumnElement[str]:
    """A constant in the SQL itself (PostgreSQL cannot always type a bound one in a UNION)."""
    assert "'" not in value
    return sa.literal_column(f"'{value}'", sa.Text)


def _local_days(zones: Iterable[str], now: datetime) -> sa.ColumnElement[str]:
    """Today's date (ISO) in each subscriber's time zone, as a CASE on the `timezone`
    column: the zones in use fall on at most three dates."""
    by_day: dict[str, list[str]] = {}
    for zone in zones:
        try:
            day = now.astimezone(ZoneInfo(zone)).date()
        except (ValueError, KeyError):  # not a zone (the configuration checks them): as UTC
            day = now.date()
        by_day.setdefault(day.isoformat(), []).append(zone)
    if not by_day:
        return _text(now.date().isoformat())
    return sa.case(*((subscribers.c.timezone.in_(names), _text(day)) for day, names in by_day.items()),
                   else_=_text(now.date().isoformat()))


def _paused_until(conn: Connection) -> sa.ColumnElement[str]:
    if conn.dialect.name == "postgresql":
        return sa.func.json_extract_path_text(sa.cast(subscribers.c.profile, sa.JSON), "paused_until")
    return sa.func.json_extract(subscribers.c.profile, "$.paused_until")


def _everyone(conn: Connection, now: datetime) -> sa.Subquery:
    zones = conn.execute(sa.select(subscribers.c.timezone).distinct()).scalars().all()
    state = sa.case(
        (subscriber_state.c.unsubscribed_at.is_not(None), _text("unsubscribed")),
        (subscriber_state.c.suspended_at.is_not(None), _text("suspended")),
        (sa.or_(subscribers.c.next_due.is_(None), _paused_until(conn) > _local_days(zones, now)), _text("paused")),
        else_=_text("active"))
    members = sa.select(
        subscribers.c.key, subscribers.c.email, subscribers.c.origin, state.label("state"),
        sa.func.coalesce(subscriber_state.c.hard_failures, 0).label("hard_failures"),
        subscriber_state.c.suspended_reason, sa.cast(sa.null(), sa.Text).label("signup_id"),
        sa.cast(sa.null(), UTCTime).label("signed_up_at"),
    ).select_from(subscribers.outerjoin(subscriber_state, subscriber_state.c.subscriber == subscribers.c.key))
    newest = sa.select(
        signups.c.id, signups.c.key, signups.c.email, signups.c.created_at,
        sa.func.row_number().over(partition_by=signups.c.key,
                                  order_by=(signups.c.created_at.desc(), signups.c.id)).label("n"),
    ).where(signups.c.confirmed_at.is_(None)).subquery()
    pending = sa.select(
        newest.c.key, newest.c.email, _text("self"), _text("pending"), sa.literal_column("0", sa.Integer),
        sa.cast(sa.null(), sa.Text), newest.c.id, newest.c.created_at,
    ).where(newest.c.n == 1, ~sa.exists().where(subscribers.c.key == newest.c.key))
    return sa.union_all(members, pending).subquery("everyone")


def _searched(everyone: sa.Subquery, search: str) -> sa.ColumnElement[bool]:
    """Addresses containing `search`, in any case (keys are the addresses lower-cased)."""
    wanted = subscriber_key(search)
    return everyone.c.key.contains(wanted, autoescape=True) if wanted else sa.true()


class Overview:
    def __init__(self, store: Store) -> None:
        self.store = store

    def page(self, now: datetime, *, search: str = "", state: str | None = None, offset: int = 0,
             limit: int = 100) -> list[Member]:
        """The members whose address contains `search` (any case), in `state` (None: any), by
        address: `limit` of them from `offset`."""
        def work(conn: Connection) -> list[Member]:
            everyone = _everyone(conn, now)
            query = sa.select(everyone).where(_searched(everyone, search))
            if state is not None:
                query = query.where(everyone.c.state == state)
            query = query.order_by(everyone.c.key, everyone.c.state).limit(limit).offset(offset)
            return [Member(row.key, row.email, row.origin, row.state, int(row.hard_failures or 0),
                           row.suspended_reason, row.signup_id, row.signed_up_at) for row in conn.execute(query)]
        return self.store.read(work)

    def counts(self, now: datetime, *, search: str = "") -> dict[str, int]:
        """How many members whose address contains `search` are in each state (every state
        named, 0 for none)."""
        def work(conn: Connection) -> dict[str, int]:
            everyone = _everyone(conn, now)
            rows = conn.execute(sa.select(everyone.c.state, sa.func.count()).where(
                _searched(everyone, search)).group_by(everyone.c.state)).all()
            return {name: count for name, count in rows}
        found = self.store.read(work)
        return {name: int(found.get(name, 0)) for name in STATES}
