"""What a subscriber would receive now, without sending or recording anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..config import Config, Subscriber
from ..match.newly_seen import newly_seen
from ..models import Digest
from ..store.database import Store
from ..store.ledger import Ledger


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
