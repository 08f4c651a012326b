"""What is new for each subscriber: the one place that decides a digest's window.

Papers first seen since the subscriber's last digest was matched (before the first one,
within their look-back; an explicit `since` overrides), minus those already delivered to
them. `digest send`, `digest preview` and `digest status` all ask here, so they agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from ..config import Config, Subscriber
from ..models import Digest, Paper
from ..store.database import Store
from ..store.ledger import Ledger
from .matcher import Matcher


def newly_seen(config: Config, store: Store, subscribers: Sequence[Subscriber], now: datetime, *,
               ledger: Ledger | None, since: datetime | None = None) -> tuple[list[Paper], Iterator[Digest]]:
    """The papers read, and each subscriber's digest in order (made lazily, one at a time).
    Without a ledger, only the look-back counts (nothing is known to be delivered)."""
    starts = {}
    for subscriber in subscribers:
        last = ledger.window_start(subscriber.email) if ledger is not None and since is None else None
        starts[subscriber.email] = since or last or now - (subscriber.lookback or config.defaults.lookback)
    earliest = min(starts.values(), default=now)
    papers = store.papers(since=earliest)
    ids = [p.id for p in papers]
    windows = {email: (start, ledger.delivered(email, ids, since=earliest) if ledger is not None else set())
               for email, start in starts.items()}
    matcher = Matcher(subscribers, config.defaults, papers)
    return papers, matcher.digests(subscribers, now, window=lambda s: windows[s.email])
