"""What the subscription centre keeps besides the directory: sign-ups waiting for their
confirmation, and the e-mails the web side sent (to cap them).

- A sign-up is a row until it is confirmed (once: the confirming UPDATE takes only an
  unconfirmed row) and purged a week after it was made, confirmed or not. The admin's
  "resend confirmation" renews it: a new id (so a new link) and made anew.
- `web_mail` records each e-mail the pages sent, by a keyed hash of the address: enough to
  refuse a fourth mail to one address in a day, or the 201st in an hour, without keeping the
  addresses of strangers someone typed into the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Store, UTCTime

_meta = sa.MetaData()
signups = sa.Table(
    "signups", _meta,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Column("created_at", UTCTime, nullable=False),
    sa.Column("confirmed_at", UTCTime),
)
web_mail = sa.Table(
    "web_mail", _meta,
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("sent_at", UTCTime, nullable=False),
)

_CAP_LOCK = 7_351_184_221  # PostgreSQL: the advisory lock that makes check-and-record one step


@dataclass(frozen=True)
class SignUp:
    id: str
    key: str
    email: str
    profile: dict
    created_at: datetime
    confirmed_at: datetime | None


def _signup(row: sa.Row) -> SignUp:
    return SignUp(row.id, row.key, row.email, json.loads(row.profile), row.created_at, row.confirmed_at)


class SignUpStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- sign-ups

    def add(self, signup_id: str, key: str, email: str, profile: dict, now: datetime) -> None:
        self.store.write(lambda conn: conn.execute(signups.insert().values(
            id=signup_id, key=key, email=email, profile=json.dumps(profile, sort_keys=True), created_at=now)))

    def get(self, signup_id: str) -> SignUp | None:
        row = self.store.read(lambda conn: conn.execute(sa.select(signups).where(signups.c.id == signup_id)).first())
        return _signup(row) if row is not None else None

    def confirm(self, signup_id: str, now: datetime, valid_for: timedelta) -> SignUp | None:
        """Mark the sign-up confirmed and return it, if it is unconfirmed and made within
        `valid_for`; None otherwise (a second confirmation finds nothing to take)."""
        def work(conn: Connection) -> SignUp | None:
            row = conn.execute(signups.update().where(
                signups.c.id == signup_id, signups.c.confirmed_at.is_(None),
                signups.c.created_at > now - valid_for).values(confirmed_at=now).returning(*signups.c)).first()
            return _signup(row) if row is not None else None
        return self.store.write(work)

    def renew(self, signup_id: str, new_id: str, now: datetime) -> datetime | None:
        """Give an unconfirmed sign-up a new id (a new confirmation link: the old one stops
        working) made `now` (its 48 hours, and its week before the purge, start again). The
        time it was made before, or None if there is no such unconfirmed sign-up."""
        def work(conn: Connection) -> datetime | None:
            before = conn.scalar(sa.select(signups.c.created_at).where(
                signups.c.id == signup_id, signups.c.confirmed_at.is_(None)))
            if before is None:
                return None
            changed = conn.execute(signups.update().where(
                signups.c.id == signup_id, signups.c.confirmed_at.is_(None)).values(id=new_id, created_at=now))
            return before if changed.rowcount == 1 else None
        return self.store.write(work)

    def purge(self, before: datetime) -> int:
        """Remove the sign-ups made before `before` (confirmed or not), and the web's mail
        records older than that; how many sign-ups went."""
        def work(conn: Connection) -> int:
            conn.execute(web_mail.delete().where(web_mail.c.sent_at < before))
            return conn.execute(signups.delete().where(signups.c.created_at < before)).rowcount
        return int(self.store.write(work))

    def forget(self, key: str, target: str) -> None:
        """Everything kept about one address (a subscriber who deleted themselves)."""
        def work(conn: Connection) -> None:
            conn.execute(signups.delete().where(signups.c.key == key))
            conn.execute(web_mail.delete().where(web_mail.c.target == target))
        self.store.write(work)

    # -- the caps on the web's mail

    def allow_mail(self, target: str, kind: str, now: datetime, *, per_address: int, per_hour: int) -> bool:
        """Record a mail to `target` (a keyed hash of the address) and return True, unless
        `per_address` went to it in the last day or `per_hour` to anyone in the last hour."""
        def work(conn: Connection) -> bool:
            if conn.dialect.name == "postgresql":  # SQLite's writers already take turns
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CAP_LOCK})")
            to_them = conn.scalar(sa.select(sa.func.count()).select_from(web_mail).where(
                web_mail.c.target == target, web_mail.c.sent_at > now - timedelta(days=1)))
            in_all = conn.scalar(sa.select(sa.func.count()).select_from(web_mail).where(
                web_mail.c.sent_at > now - timedelta(hours=1)))
            if int(to_them or 0) >= per_address or int(in_all or 0) >= per_hour:
                return False
            conn.execute(web_mail.insert().values(target=target, kind=kind, sent_at=now))
            return True
        return bool(self.store.write(work))

    def mails(self, since: datetime) -> int:
        return int(self.store.read(lambda conn: conn.scalar(sa.select(sa.func.count()).select_from(web_mail).where(
            web_mail.c.sent_at > since))) or 0)
