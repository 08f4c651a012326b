"""What is new for each subscriber: the one place that decides a digest's window.

Papers first seen since the subscriber's last digest was matched (before the first one,
within their look-back; an explicit `since` overrides), minus those already delivered to
them. `digest send`, `digest preview` and `digest status` all ask here, so they agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial

from ..config import Config, Subscriber
from ..models import Digest, Paper
from ..store.database import Store
from ..store.ledger import Ledger
from ..store.ratings import Ratings
from .learned import with_learned
from .matcher import Matcher

BATCH = 500  # subscribers per question to the ledger


def newly_seen(config: Config, store: Store, subscribers: Sequence[Subscriber], now: datetime, *,
               ledger: Ledger | None, since: datetime | None = None,
               batch: int = BATCH) -> tuple[list[Paper], Iterator[Digest]]:
    """The papers read, and each subscriber's digest in order (made lazily, a block at a time; the
    ledger asked once per `batch` subscribers). Without a ledger, only the look-back counts
    (nothing is known to be delivered)."""
    subscribers = with_learned(subscribers, Ratings(store).models([s.email for s in subscribers]))
    last: dict[str, datetime] = {}
    if ledger is not None and since is None:
        for chunk in chunks(subscribers, batch):
            last.update(ledger.window_starts([s.email for s in chunk]))
    starts = {s.email: since or last.get(s.email) or now - (s.lookback or config.defaults.lookback)
              for s in subscribers}
    earliest = min(starts.values(), default=now)
    papers = store.papers(since=earliest)
    matcher = Matcher(subscribers, config.defaults, papers)
    examples = {s.email: ids for s in subscribers if (ids := examples_of(s))}  # theirs already: never "new"

    def window(subscriber: Subscriber, delivered: dict[str, set[str]]) -> tuple[datetime, set[str]]:
        gone = delivered.get(subscriber.email, set())
        given = examples.get(subscriber.email)
        return starts[subscriber.email], gone | given if given else gone

    def digests() -> Iterator[Digest]:
        for chunk in chunks(subscribers, batch):
            delivered = ledger.delivered_to([s.email for s in chunk], since=earliest) if ledger is not None else {}
            yield from matcher.digests(chunk, now, window=partial(window, delivered=delivered))

    return papers, digests()


def examples_of(subscriber: Subscriber) -> set[str]:
    """The papers their topics give as examples (left out of their digests)."""
    return {i for topic in subscriber.topics for i in topic.examples}


def chunks(items: Sequence[Subscriber], size: int) -> Iterator[Sequence[Subscriber]]:
    """`items` in slices of `size`: one question to the ledger, one transaction, per slice."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
