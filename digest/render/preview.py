"""What a subscriber would receive now, without sending or recording anything."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import datetime

from ..config import Config, Subscriber
from ..errors import DigestError
from ..match.newly_seen import newly_seen
from ..models import Digest
from ..store.database import Store
from ..store.ledger import Ledger

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
    """The digest `digest send` would make now (see digest.newly_seen); `since` overrides."""
    papers, digests = newly_seen(config, store, [subscriber], now, ledger=Ledger(store), since=since)
    return Preview(subscriber, next(digests), len(papers))
