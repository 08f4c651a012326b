"""Topics' examples trained into their topics' models when they change, never per digest.

Where subscribers' topics come in — `digest run` starting or reloading, `digest send` and
`digest preview` before they match, the manage page when the reader saves — each topic's
examples are compared with those its model was trained with (one query, a set comparison:
cheap for 100,000 subscribers when nothing changed), and only the topics whose examples differ
are retrained (subscribe/learning.py). Their papers are looked up in the store; the missing
ones are asked of the arXiv API by id (gather/by_id.py) and kept apart from the papers
(store/examples.py). An id arXiv does not know is warned about and left out; without the
network, the topics are trained with what the store has, and asked for again next time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..config import Config, Subscriber
from ..deliver import roster
from ..gather.by_id import papers_by_id
from ..gather.categories import ARXIV_INTERVAL
from ..gather.http import Fetcher
from ..store.database import Store
from ..store.directory import Directory
from ..store.examples import Examples, Known
from ..store.ledger import subscriber_key
from .learning import recent_papers, retrain

log = logging.getLogger("digest.subscribe")

EXAMPLES_KEY = '"examples":'  # in a subscriber's settings JSON when a topic of theirs has examples


@dataclass(frozen=True)
class Stale:
    """A topic whose examples differ from those its model was trained with."""

    email: str
    topic: str
    examples: frozenset[str]


@dataclass
class Refreshed:
    retrained: int = 0
    unknown: list[tuple[str, str, str]] = field(default_factory=list)  # (address, topic, id) arXiv does not know
    unreachable: str | None = None  # why arXiv could not be asked; those examples are asked again next time
    waiting: int = 0  # topics to be trained again next time (examples not fetched, or no papers to set them against)

    def warnings(self) -> list[str]:
        """What a person should hear about, one line each."""
        lines = [f"{email}, topic {topic!r}: arXiv does not know the example {ident}; remove it from the topic's "
                 "examples or check the id" for email, topic, ident in self.unknown]
        if self.unreachable:
            lines.append(f"topics' examples not all fetched ({self.unreachable}); their topics were trained with "
                         "what the store has, and the rest is asked for next time")
        return lines


Wanted = Mapping[str, Mapping[str, frozenset[str]]]  # address → topic name → its examples


def wanted_of(subscribers: Iterable[Subscriber]) -> dict[str, dict[str, frozenset[str]]]:
    return {s.email: {t.name: frozenset(t.examples) for t in s.topics} for s in subscribers}


def _wanted_in(profile: str) -> dict[str, frozenset[str]]:
    """A directory row's topics and their examples, read from its JSON as written (validated
    then, and normalised): far cheaper than a Subscriber, for every row with examples."""
    return {t["name"]: frozenset(t.get("examples", ())) for t in json.loads(profile).get("topics", [])}


def stale(wanted: Wanted, trained: Mapping[str, Mapping[str, frozenset[str]]]) -> list[Stale]:
    """The topics whose examples differ from those recorded in `trained` (address key → topic →
    ids): a topic given examples, changed or emptied. A topic no subscriber has any more is
    left alone (its model is unused)."""
    found = []
    for email, topics in wanted.items():
        theirs = trained.get(subscriber_key(email), {})
        for name, examples in topics.items():
            if examples != theirs.get(name, frozenset()):
                found.append(Stale(email, name, examples))
    return found


@dataclass(frozen=True)
class Asking:
    """How arXiv's API is asked for the examples the store lacks."""

    url: str
    fetcher: Fetcher | None = None  # None: one for the call, ended by `stop`
    interval: float = ARXIV_INTERVAL  # seconds between requests
    timeout: float = 30.0  # one connection or read
    within: float | None = None  # seconds for every request in all (a web page waits); the rest: next time
    stop: threading.Event | None = None


def refresh(store: Store, subscribers: Sequence[Subscriber], now: datetime, asking: Asking) -> Refreshed:
    """Retrain these subscribers' topics whose examples changed."""
    if not subscribers:
        return Refreshed()
    wanted = wanted_of(subscribers)
    return _retrain(store, wanted, stale(wanted, Examples(store).trained_with(list(wanted))), now, asking)


def refresh_everyone(config: Config, store: Store, now: datetime, asking: Asking | None = None) -> Refreshed:
    """`refresh` for every subscriber (subscribers.yaml's synced first) that has examples or had
    them when last trained: those are all the directory is asked for."""
    directory = Directory(store)
    roster.sync(config, directory, now)
    trained = Examples(store).trained_with()
    rows = {row.key: row for row in directory.containing(EXAMPLES_KEY)}
    rows.update(directory.get([key for key in trained if key not in rows]))  # examples since taken away
    wanted = {row.email: _wanted_in(row.profile) for row in rows.values()}
    return _retrain(store, wanted, stale(wanted, trained), now, asking or Asking(config.arxiv_api))


def _retrain(store: Store, wanted: Wanted, topics: list[Stale], now: datetime, asking: Asking) -> Refreshed:
    done = Refreshed()
    if not topics:
        return done
    kept = Examples(store)
    ids = set().union(*(t.examples for t in topics))
    known = kept.known(ids)
    ask = sorted(ids - set(known.papers))  # the unknown too: their topics changed, arXiv may know them now
    if ask:
        known, done.unreachable = _asked(kept, known, ask, now, asking)
    recent = recent_papers(store, now)
    for topic in topics:
        retrain(store, topic.email, topic.topic, now, examples=topic.examples, known=known, recent=recent)
        done.retrained += 1
        done.unknown += [(topic.email, topic.topic, i) for i in sorted(topic.examples & known.unknown)]
    emails = sorted({t.email for t in topics})
    done.waiting = len(stale({e: wanted[e] for e in emails}, kept.trained_with(emails)))
    for line in done.warnings():
        log.warning("%s", line)
    log.info("examples: %d topics retrained, %d waiting for next time", done.retrained, done.waiting)
    return done


def _asked(kept: Examples, known: Known, ask: list[str], now: datetime, asking: Asking) -> tuple[Known, str | None]:
    """What the store knows, with what arXiv said of `ask` (kept for next time); why not all
    of it was said, if not."""
    fetcher = asking.fetcher or Fetcher(stop=asking.stop)
    try:
        answer = papers_by_id(ask, url=asking.url, fetcher=fetcher, now=now, timeout=asking.timeout,
                              interval=asking.interval,
                              deadline=time.monotonic() + asking.within if asking.within is not None else None)
    finally:
        if asking.fetcher is None:
            fetcher.close()
    kept.keep(answer.papers, answer.unknown, now)
    papers = {**known.papers, **{p.id: p for p in answer.papers}}
    return Known(papers, (known.unknown | answer.unknown) - set(papers)), answer.error
