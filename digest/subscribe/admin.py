"""`digest subscribers`: list, add, remove, import and export the subscribers in the database.

Every subscriber is in the directory (store/directory.py) under one origin: `config` for
subscribers.yaml's (synced from the file), `admin` for those added or imported here. Only a
row's origin changes it: `add`, `remove` and `import` refuse an address subscribers.yaml lists
(edit it there), and a reload of the file never undoes a row another origin holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ..config import Config, Subscriber
from ..deliver import roster
from ..deliver.schedule import receiving
from ..errors import BadArgument, ConfigError, Problem, UnknownSubscriber
from ..store.database import Store
from ..store.directory import Directory, Listed
from ..store.ledger import Ledger, SubscriberState, subscriber_key
from .csv_rows import MORE, topics_cell

ORIGIN = "admin"
SELF = "self"  # signed up, or changed their settings, on the web (subscribe/centre.py)
HELD_BY = {"config": "it is listed in subscribers.yaml: change it there"}


class SubscriberAdmin:
    def __init__(self, config: Config, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config, self.clock = config, clock
        self.directory, self.ledger = Directory(store), Ledger(store)
        roster.sync(config, self.directory, clock())  # subscribers.yaml's are listed too

    def listing(self) -> Iterator[dict[str, Any]]:
        """Every subscriber, by address: settings, origin, state and next digest due."""
        for page in self.directory.pages():
            states = self.ledger.states([row.email for row in page])
            for row in page:
                subscriber = roster.subscriber(row)
                yield _described(row, subscriber, states[row.email], receiving(self.config, subscriber, self.clock()))

    def shadowed(self) -> list[str]:
        """subscribers.yaml's addresses that another origin holds (the file's entries ignored)."""
        keys = [subscriber_key(s.email) for s in self.config.subscribers]
        held = self.directory.origins(keys)
        return [s.email for s, key in zip(self.config.subscribers, keys) if held.get(key, roster.ORIGIN) != roster.ORIGIN]

    def add(self, subscriber: Subscriber) -> None:
        if not self._gets_something(subscriber):
            raise BadArgument(f"{subscriber.email} has no topics, so would never get a digest",
                              hint="give --topic (a keyword, or \"Name: keyword, keyword\"), or --trending N for "
                                   "the trending list alone")
        key = subscriber_key(subscriber.email)
        held = self.directory.origins([key]).get(key)
        if held is not None:
            raise BadArgument(f"{subscriber.email} is already a subscriber (origin {held})",
                              hint=HELD_BY.get(held, "`digest subscribers remove` it first, or `import` a CSV "
                                                     "row to change it"))
        self._put([subscriber])

    def remove(self, emails: Sequence[str]) -> int:
        keys = [subscriber_key(e) for e in emails]
        held = self.directory.origins(keys)
        for email, key in zip(emails, keys):
            if key not in held:
                raise UnknownSubscriber(f"no subscriber {email!r}", hint="`digest subscribers list` shows them all")
            if held[key] != ORIGIN:
                raise BadArgument(f"{email} cannot be removed here: {HELD_BY.get(held[key], f'origin {held[key]}')}")
        return self.directory.remove(ORIGIN, keys)

    def import_rows(self, rows: Sequence[tuple[int, Subscriber]], shown: str) -> tuple[int, int, int]:
        """Add or update every row, after checking none belongs to subscribers.yaml (all such
        rows reported with their lines, nothing changed). The rows of people who signed up on
        the web are left as they are (theirs to change: an export read back holds them).
        Returns (added, changed, left to their owners)."""
        held = self.directory.origins([subscriber_key(s.email) for _, s in rows])
        theirs = [(line, s) for line, s in rows if held.get(subscriber_key(s.email)) == SELF]
        rows = [(line, s) for line, s in rows if held.get(subscriber_key(s.email)) != SELF]
        problems = [Problem(shown, line, "email", f"{s.email}: {HELD_BY.get(origin, f'origin {origin}')}")
                    for line, s in rows if (origin := held.get(subscriber_key(s.email), ORIGIN)) != ORIGIN]
        problems += [Problem(shown, line, "topics", f"{s.email}: no topics, so no digest ever: give topics, or a "
                             "trending count for the trending list alone") for line, s in rows if not self._gets_something(s)]
        if problems:
            raise ConfigError(problems)
        return (*self._put([s for _, s in rows]), len(theirs))

    def _gets_something(self, subscriber: Subscriber) -> bool:
        """Topics, or a trending section (theirs or the default): as `digest validate` asks of
        subscribers.yaml's, lest a subscriber wait for a digest that never comes."""
        return bool(subscriber.topics) or self.config.setting(subscriber, "trending") > 0

    def _put(self, subscribers: Sequence[Subscriber]) -> tuple[int, int]:
        now = self.clock()
        return self.directory.put(ORIGIN, [roster.as_wanted(self.config, s) for s in subscribers], now,
                                  lambda schedule, timezone: roster.first_due(schedule, timezone, now))


def _described(row: Listed, subscriber: Subscriber, state: SubscriberState, receiving_now: bool) -> dict[str, Any]:
    status = state.status(receiving_now)
    settings = json.loads(row.profile)
    return {
        "email": row.email,
        "name": subscriber.name or "",
        "topics": topics_cell(subscriber.topics),
        "schedule": subscriber.schedule or "",  # their own; empty: the configuration's default
        "timezone": subscriber.timezone or "",
        "effective_schedule": f"{row.schedule} {row.timezone}",
        **{name: _cell(settings.get(name)) for name in ("max_papers", "trending", *MORE)},
        "origin": row.origin,
        "state": status,
        "next_due": row.next_due.isoformat() if row.next_due and status == "active" else "",
        "settings": settings,
    }


def _cell(value: Any) -> str:
    """A setting as its CSV cell: as subscribers.yaml writes it, empty for the default."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
