"""What a subscriber would receive now, without sending or recording anything."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import datetime

from .compose import Composer, Email
from .config import Config, Subscriber
from .errors import DigestError
from .matching import matcher_for
from .models import Digest
from .store import Store

SECRET_ENV = "DIGEST_SECRET"


def find_subscriber(config: Config, email: str) -> Subscriber:
    for subscriber in config.subscribers:
        if subscriber.email.lower() == email.strip().lower():
            return subscriber
    known = [s.email for s in config.subscribers]
    close = difflib.get_close_matches(email, known, n=1)
    raise DigestError(f"no subscriber {email!r} in {config.path}",
                      hint=f"did you mean {close[0]!r}?" if close else f"subscribers: {', '.join(known[:5]) or 'none'}")


def signing_secret(store: Store) -> str:
    """$DIGEST_SECRET if set (several machines sharing one key), else the store's own."""
    return os.environ.get(SECRET_ENV) or store.secret()


@dataclass(frozen=True)
class Preview:
    subscriber: Subscriber
    digest: Digest
    stored: int  # papers stored in the window (0: nothing fetched yet)


def preview_digest(config: Config, store: Store, subscriber: Subscriber, now: datetime,
                   since: datetime | None = None) -> Preview:
    """The digest `digest send` would make now: papers first seen since the subscriber's last
    digest (else the look-back; `since` overrides), minus those already delivered to them."""
    from .ledger import Ledger

    ledger = Ledger(store)
    window = since or ledger.window_start(subscriber.email) or now - (subscriber.lookback or config.defaults.lookback)
    papers = store.papers(since=window)
    delivered = ledger.delivered(subscriber.email, [p.id for p in papers], since=window)
    digest = matcher_for(config, papers, [subscriber]).digest(subscriber, now, window, delivered)
    return Preview(subscriber, digest, len(papers))


def preview_email(config: Config, store: Store, composer: Composer, email: str, now: datetime,
                  since: datetime | None = None) -> tuple[Preview, Email]:
    preview = preview_digest(config, store, find_subscriber(config, email), now, since)
    return preview, composer.email(preview.digest, preview.subscriber)
