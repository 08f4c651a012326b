"""The subscription centre's core: sign-up with double opt-in, and the links that let a
subscriber manage their own settings. The web pages (web/centre.py) are a thin layer over it.

- A sign-up is kept apart from the directory until its address is confirmed: nothing is sent
  to that address but the confirmation. The confirmation link works once, for 48 hours; GET
  shows a button and only POST confirms (mail scanners fetch links). Unconfirmed sign-ups are
  purged after a week.
- Signing up an address that is already subscribed looks the same to the visitor and mails
  the owner a manage link instead: the form tells nobody who is subscribed.
- Subscribers who signed up on the web are of origin `self`: only they change their row (a
  reload of subscribers.yaml never does; see store/directory.py).
- Every e-mail the pages send is capped per address (a day) and in all (an hour): a bot
  cannot make us mail-bomb a stranger, and a flood is refused, never queued.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from ..config import Config, Subscriber
from ..deliver import roster
from ..deliver.smtp import SmtpSender
from ..render.links import (
    address_hash,
    confirm_token,
    manage_from_token,
    manage_url,
    signup_from_token,
)
from ..store.database import Store
from ..store.directory import Directory, Listed
from ..store.ledger import Ledger, subscriber_key
from ..store.ratings import Ratings
from ..store.signups import SignUp, SignUpStore

ORIGIN = "self"
CONFIRM_FOR = timedelta(hours=48)
PURGE_AFTER = timedelta(days=7)
MANAGE_GRACE = timedelta(days=1)  # an older manage link keeps working this long after a fresh one

log = logging.getLogger("digest.subscribe")


@dataclass(frozen=True)
class Confirmed:
    email: str
    manage_url: str
    already: bool  # the address was subscribed before this confirmation


class Centre:
    def __init__(self, config: Config, store: Store, secret: str, send: Callable[[EmailMessage], None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not config.base_url:
            raise ValueError("the subscription centre needs base_url (its links go in e-mails)")
        self.config, self.secret, self.send, self.clock = config, secret, send, clock
        self.base_url = config.base_url.rstrip("/")
        self.directory, self.ledger, self.signups = Directory(store), Ledger(store), SignUpStore(store)
        self.ratings = Ratings(store)  # the readers' "more like this" / "not for me" (web/ratings.py)

    # -- links

    def manage_url(self, email: str) -> str:
        key = subscriber_key(email)
        row = self.directory.get([key]).get(key)
        return manage_url(self.base_url, self.secret, key, row.manage_generation if row else 0)

    def manage_key(self, token: str) -> str | None:
        """The address key a manage token is valid for now, else None (see manage_row)."""
        row = self.manage_row(token)
        return row.key if row is not None else None

    def manage_row(self, token: str) -> Listed | None:
        """The directory row of the subscriber a manage token is valid for now (its generation
        current, or the one before within the grace period, and the subscriber still there)."""
        found = manage_from_token(self.secret, token)
        if found is None:
            return None
        key, generation = found
        roster.sync(self.config, self.directory, self.clock())
        row = self.directory.get([key]).get(key)
        if row is None:
            return None
        fresh = generation == row.manage_generation or (
            generation == row.manage_generation - 1 and row.manage_previous_until is not None
            and self.clock() < row.manage_previous_until)
        return row if fresh else None

    # -- sign-up

    def sign_up(self, subscriber: Subscriber) -> None:
        """Mail a confirmation link (or, to an address already subscribed, a manage link), if
        the caps allow; the caller answers the same whatever happened."""
        key = subscriber_key(subscriber.email)
        now = self.clock()
        if self._known(key):
            self._mail(key, subscriber.email, "manage", self.manage_url(subscriber.email), reason="already")
            return
        signup_id = secrets.token_urlsafe(18)
        self.signups.add(signup_id, key, subscriber.email, subscriber.model_dump(mode="json", exclude_defaults=True), now)
        self._mail(key, subscriber.email, "confirm", f"{self.base_url}/confirm/{confirm_token(self.secret, signup_id)}",
                   expires=now + CONFIRM_FOR)

    def resend_confirmation(self, signup_id: str) -> str:
        """Mail a pending sign-up a fresh confirmation link (the admin pages' button), through
        the same caps as any mail of the pages. The sign-up is renewed rather than copied: it
        takes a new id, so the new link is the only one that works (an older mail's link, which
        may have been forwarded or leaked, stops), its 48 hours start again, and the admin sees
        one pending row, not two. Returns "sent"; "capped" (nothing changed: the caps refused
        it); "subscribed" (the address is a subscriber now); or "gone" (confirmed or purged).
        A failure to send undoes the renewal and raises."""
        signup = self.signups.get(signup_id)
        if signup is None or signup.confirmed_at is not None:
            return "gone"
        if self._known(signup.key):
            return "subscribed"
        if not self._may_mail(signup.key, "confirm"):
            return "capped"
        now = self.clock()
        new_id = secrets.token_urlsafe(18)
        made = self.signups.renew(signup_id, new_id, now)
        if made is None:
            return "gone"  # confirmed meanwhile
        try:
            self._send_notice(signup.email, "confirm", f"{self.base_url}/confirm/{confirm_token(self.secret, new_id)}",
                              expires=now + CONFIRM_FOR)
        except Exception:
            self.signups.renew(new_id, signup_id, made)  # the old link works again, as before
            raise
        log.info("mailed a pending sign-up a fresh confirmation link")
        return "sent"

    def _signup(self, token: str) -> SignUp | None:
        """The sign-up a genuine confirmation token names, in any state (nothing changes)."""
        signup_id = signup_from_token(self.secret, token)
        return self.signups.get(signup_id) if signup_id else None

    def pending(self, token: str) -> SignUp | None:
        """The unconfirmed, unexpired sign-up a confirmation token names (nothing changes)."""
        signup = self._signup(token)
        if signup is None or signup.confirmed_at is not None or self.clock() - signup.created_at >= CONFIRM_FOR:
            return None
        return signup

    def confirmed_before(self, token: str) -> bool:
        """Whether a confirmation token names a sign-up confirmed already, whose address is
        still subscribed (a second visit of the link: nothing to do)."""
        signup = self._signup(token)
        return signup is not None and signup.confirmed_at is not None and self._known(signup.key)

    def confirm(self, token: str) -> Confirmed | None:
        """Confirm a sign-up (once): the subscriber joins the directory, of origin `self`."""
        signup_id = signup_from_token(self.secret, token)
        now = self.clock()
        signup = self.signups.confirm(signup_id, now, CONFIRM_FOR) if signup_id else None
        if signup is None:
            return None
        if self._known(signup.key):  # subscribed meanwhile: keep what is there
            return Confirmed(signup.email, self.manage_url(signup.email), already=True)
        subscriber = Subscriber.model_validate(signup.profile)
        self.directory.put(ORIGIN, [roster.as_wanted(self.config, subscriber)], now,
                           lambda schedule, timezone: roster.first_due(schedule, timezone, now))
        self.ledger.resubscribe(signup.email)  # a new opt-in lifts an old unsubscription
        log.info("confirmed a sign-up")
        return Confirmed(signup.email, self.manage_url(signup.email), already=False)

    def mail_manage_link(self, email: str) -> None:
        """A fresh manage link to a subscriber (the older ones retire after a grace period);
        nothing to an address that is not subscribed (the caller answers the same)."""
        key = subscriber_key(email)
        if not self._known(key) or not self._may_mail(key, "manage"):  # the cap first: asking past it
            return  # retired their links without mailing a new one (anyone may ask, for any address)
        self.directory.renew_manage(key, self.clock(), MANAGE_GRACE)
        self._send_notice(email, "manage", self.manage_url(email), reason="asked")

    def purge(self) -> int:
        """Remove sign-ups (and mail records) older than a week; how many sign-ups went."""
        return self.signups.purge(self.clock() - PURGE_AFTER)

    def knows(self, email: str) -> bool:
        """Whether the address is a subscriber (of any origin), unsubscribed ones included."""
        return self._known(subscriber_key(email))

    def _known(self, key: str) -> bool:
        """Whether the address is a subscriber, of any origin (subscribers.yaml's synced first:
        one query when the file has not changed)."""
        roster.sync(self.config, self.directory, self.clock())
        return key in self.directory.origins([key])

    # -- mail

    def _mail(self, key: str, email: str, kind: str, link: str, *, reason: str = "asked",
              expires: datetime | None = None) -> None:
        if self._may_mail(key, kind):
            self._send_notice(email, kind, link, reason=reason, expires=expires)

    def mail_target(self, key: str) -> str:
        """What the mail caps count an address's mails under (and forget with it): a keyed hash
        of its mailbox."""
        return address_hash(self.secret, mailbox(key))

    def _may_mail(self, key: str, kind: str) -> bool:
        """Whether the caps allow one more mail to this address (counted as sent if so)."""
        signups = self.config.signups
        if not self.signups.allow_mail(self.mail_target(key), kind, self.clock(),
                                       per_address=signups.per_address, per_hour=signups.per_hour):
            log.warning("not mailing a %s link: the cap of %d a day to one address or %d an hour is reached",
                        kind, signups.per_address, signups.per_hour)
            return False
        return True

    def _send_notice(self, email: str, kind: str, link: str, *, reason: str = "asked",
                     expires: datetime | None = None) -> None:
        from ..render.notice import notice_message

        templates = Path(self.config.resolve_local(self.config.templates)) if self.config.templates else None
        self.send(notice_message(self.config, kind, email, link, now=self.clock(), expires=expires,  # type: ignore[arg-type]
                                 reason=reason, templates=templates))


def smtp_send(config: Config) -> Callable[[EmailMessage], None]:
    """Send one notice through the configured SMTP server (a connection each: the pages send
    a few an hour, not thousands)."""
    ca_file = config.resolve_local(config.smtp.ca_file) if config.smtp.ca_file else None

    def send(message: EmailMessage) -> None:
        sender = SmtpSender(config.smtp, ca_file=ca_file)
        try:
            sender.send(message)
        finally:
            sender.close()
    return send


def mailbox(key: str) -> str:
    """The mailbox an address reaches, as the caps count it: sub-addresses ("ada+1@",
    "ada+2@") reach one inbox, so they share its cap (each had three mails a day of its own)."""
    local, at, domain = key.rpartition("@")
    return f"{local.split('+', 1)[0] or local}{at}{domain}"
