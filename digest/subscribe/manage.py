"""A subscriber's own settings, behind their manage link: read and change them, pause until a
day, unsubscribe and come back, see what today's digest would have been and the papers they
rated, export everything kept about them, and delete it.

An edit here takes the subscriber's row over for origin `self` (store/directory.py): a reload
of subscribers.yaml never undoes it, and the admin sees the file's entry reported as shadowed.
Saving retrains the topics whose examples changed. Deleting removes the row, the sign-ups and
mail records, the ratings and what they and the examples taught, and the ledger's state;
the digests sent stay only as anonymous counts. An address subscribers.yaml still lists would come back
with the next sync, so it is kept unsubscribed and the admin is told to remove it there.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Subscriber
from ..deliver import roster
from ..deliver.schedule import receiving
from ..gather.categories import ARXIV_INTERVAL
from ..gather.http import Fetcher
from ..match.index import PaperWords, paper_words
from ..match.learned import with_learned
from ..match.matcher import Matcher
from ..match.newly_seen import examples_of
from ..match.relevance import DescriptionScores
from ..models import Digest, Paper
from ..store.directory import Listed
from ..store.examples import Examples
from ..store.ledger import SubscriberState, subscriber_key
from ..store.ratings import Ratings
from .centre import ORIGIN, Centre
from .examples import Asking, Refreshed, refresh
from .learning import retrain

log = logging.getLogger("digest.subscribe")

PAPERS_FRESH_FOR = 300.0  # seconds the preview's papers are read once for every visitor
PREVIEWS_KEPT = 2048  # previews of the same settings over the same papers, the most recent
EXAMPLES_WAIT = 15.0  # seconds a save waits for arXiv's answer on new examples (the rest: next time)


@dataclass(frozen=True)
class Managed:
    """A subscriber as their manage page shows them."""

    row: Listed
    subscriber: Subscriber
    state: SubscriberState
    receiving: bool

    @property
    def status(self) -> str:
        return self.state.status(self.receiving)


class SelfService:
    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self._papers: tuple[float, list[Paper], list[PaperWords], DescriptionScores] | None = None
        self._papers_lock = threading.Lock()
        self._previews: OrderedDict[tuple, Digest] = OrderedDict()  # by papers read and settings
        self.fetcher = Fetcher(retries=2)  # one for every save: arXiv's 3 s between requests holds across them
        # One save asks arXiv at a time: saves at once queued on its 3 s pacing, each holding one
        # of the server's threads (45 of them stalled every page for minutes); the others train
        # with what the store has, and their examples are asked for after the next fetch
        self._asking = threading.Lock()
        self.arxiv_interval = ARXIV_INTERVAL

    @property
    def config(self):  # type: ignore[no-untyped-def]  # the centre's, reloaded with the file
        return self.centre.config

    # -- reading

    def by_token(self, token: str) -> Managed | None:
        """The subscriber a manage token is valid for now, else None."""
        row = self.centre.manage_row(token)
        return self.load(row.key, row) if row is not None else None

    def load(self, key: str, row: Listed | None = None) -> Managed | None:
        row = row or self.centre.directory.get([key]).get(key)
        if row is None:
            return None
        subscriber = roster.subscriber(row)
        state = self.centre.ledger.state(row.email)
        return Managed(row, subscriber, state, receiving(self.config, subscriber, self.centre.clock()))

    def today(self, managed: Managed) -> date:
        """Their day now, in their time zone (what a pause's end is compared with)."""
        return self.centre.clock().astimezone(ZoneInfo(managed.row.timezone)).date()

    # -- changing

    def save(self, key: str, subscriber: Subscriber, renamed: Mapping[str, str] | None = None) -> bool:
        """Their new settings (the address stays theirs); False if they are gone. `renamed`:
        topics renamed (old name → new), whose ratings and what they taught follow them."""
        if subscriber_key(subscriber.email) != key:
            raise ValueError("a subscriber's settings cannot move to another address")
        now = self.centre.clock()
        taken = self.centre.directory.claim(ORIGIN, roster.as_wanted(self.config, subscriber), now,
                                            lambda schedule, timezone: roster.first_due(schedule, timezone, now))
        if taken:
            log.info("a subscriber changed their settings")
            for old, new in (renamed or {}).items():
                if self.centre.ratings.rename_topic(key, old, new):
                    log.info("a subscriber renamed a topic: its ratings follow it")
            self.learn_examples(subscriber)
        return taken

    def learn_examples(self, subscriber: Subscriber) -> Refreshed:
        """Their topics whose examples changed, retrained now (new examples asked of arXiv, for
        up to EXAMPLES_WAIT seconds): the next digest, and the preview, follow them."""
        mine = self._asking.acquire(blocking=False)  # else another save is asking: none asked now
        try:
            return refresh(self.centre.directory.store, [subscriber], self.centre.clock(), Asking(
                self.config.arxiv_api, self.fetcher, self.arxiv_interval, timeout=EXAMPLES_WAIT,
                within=EXAMPLES_WAIT if mine else 0.0))
        finally:
            if mine:
                self._asking.release()

    def examples_found(self, subscriber: Subscriber) -> dict[str, dict[str, list[str]]]:
        """Per topic with examples, those arXiv does not know and those not fetched yet (the
        manage page says so under the topic's examples)."""
        wanted = examples_of(subscriber)
        if not wanted:
            return {}
        known = Examples(self.centre.directory.store).known(wanted)
        return {t.name: {"unknown": [i for i in t.examples if i in known.unknown],
                         "missing": [i for i in t.examples if i not in known.papers and i not in known.unknown]}
                for t in subscriber.topics if t.examples}

    def pause(self, key: str, until: date | None) -> bool:
        """No digests before `until` (their day); None resumes now."""
        managed = self.load(key)
        if managed is None:
            return False
        return self.save(key, managed.subscriber.model_copy(update={"paused_until": until}))

    def unsubscribe(self, key: str) -> None:
        managed = self.load(key)
        if managed is not None:
            self.centre.ledger.unsubscribe(managed.row.email, self.centre.clock())

    def resubscribe(self, key: str) -> None:
        managed = self.load(key)
        if managed is not None:
            self.centre.ledger.resubscribe(managed.row.email)

    def rated(self, key: str) -> list[dict[str, Any]]:
        """Their ratings, newest first, as the manage page lists them: the paper's title and
        link when the store still has it (else its id and no link), its topic, +1 or -1."""
        ratings = self.centre.ratings.of(key)
        papers = {p.id: p for p in self.centre.directory.store.papers(ids=[r.paper for r in ratings])} if ratings else {}
        return [{"paper": r.paper, "title": papers[r.paper].title if r.paper in papers else r.paper,
                 "url": papers[r.paper].url if r.paper in papers else "", "topic": r.topic, "value": r.value,
                 "rated_at": r.rated_at} for r in ratings]

    def unrate(self, key: str, paper: str) -> bool:
        """Take a rating back; False if there was none."""
        rating = self.centre.ratings.get(key, paper)
        removed = self.centre.ratings.remove(key, paper)
        if removed and rating is not None:
            log.info("a subscriber took a rating back")
            retrain(self.centre.directory.store, key, rating.topic, self.centre.clock())
        return removed

    def export(self, key: str) -> dict[str, Any] | None:
        """Everything kept about them, as JSON-ready data."""
        managed = self.load(key)
        if managed is None:
            return None
        entries = self.centre.ledger.entries(managed.row.email)
        state = managed.state
        return {
            "email": managed.row.email,
            "exported_at": self.centre.clock().isoformat(),
            "origin": managed.row.origin,
            "status": managed.status,
            "settings": managed.subscriber.model_dump(mode="json", exclude_defaults=True),
            "effective_schedule": {"schedule": managed.row.schedule, "timezone": managed.row.timezone},
            "unsubscribed_at": state.unsubscribed_at.isoformat() if state.unsubscribed_at else None,
            "suspended_at": state.suspended_at.isoformat() if state.suspended_at else None,
            "digests": [{"period": e.period, "state": e.state, "sent_at": e.sent_at.isoformat() if e.sent_at else None,
                         "papers": list(e.papers)} for e in entries],
            "ratings": [{"paper": r.paper, "topic": r.topic, "value": r.value, "rated_at": r.rated_at.isoformat()}
                        for r in self.centre.ratings.of(key)],
        }

    def delete(self, key: str) -> bool:
        """Remove them and everything personal; False if they were not there."""
        managed = self.load(key)
        if managed is None:
            return False
        email = managed.row.email
        listed_in_file = any(subscriber_key(s.email) == key for s in self._file_subscribers())
        now = self.centre.clock()
        self.centre.ledger.forget(email, f"deleted:{secrets.token_hex(8)}", now, still_listed=listed_in_file)
        self.centre.signups.forget(key, self.centre.mail_target(key))
        self.centre.ratings.forget(key)
        Examples(self.centre.directory.store).forget(key)
        self.centre.directory.remove(None, [key])
        if listed_in_file:
            log.warning("a subscriber deleted themselves, but %s still lists them: they stay unsubscribed; "
                        "remove their entry from the file", self.config.path)
            roster.sync(self.config, self.centre.directory, now)
        log.info("a subscriber deleted their data")
        return True

    def _file_subscribers(self) -> list[Subscriber]:
        config = self.config
        if not config.subscribers_read:
            from ..config import load_config

            config = load_config(config.path)
        return list(config.subscribers)

    # -- what today's digest would have had

    def preview(self, subscriber: Subscriber) -> Digest:
        """The digest these settings would have made from the latest day's papers (the last 24
        hours before the newest paper), nothing delivered taken out: what the topics catch."""
        read_at, papers, words, pool = self.latest_papers()
        shown = subscriber.model_copy(update={"paused_until": None})
        shown = with_learned([shown], Ratings(self.centre.directory.store).models([shown.email]))[0]
        key = (read_at, shown.model_dump_json(), tuple(t.learned for t in shown.topics))
        with self._papers_lock:
            known = self._previews.get(key)
        if known is not None:  # the same settings and ratings over the same papers (a reload, a save)
            return known
        now = self.centre.clock()
        newest = max((p.first_seen_at for p in papers if p.first_seen_at), default=now)
        digest = Matcher([shown], self.config.defaults, papers, words, pool).digest(
            shown, now, since=newest - timedelta(days=1), delivered=examples_of(shown))
        with self._papers_lock:
            self._previews[key] = digest
            if len(self._previews) > PREVIEWS_KEPT:
                self._previews.popitem(last=False)
        return digest

    def latest_papers(self) -> tuple[float, list[Paper], list[PaperWords], DescriptionScores]:
        """The papers of the day before the newest one was first seen, and their words: read
        once per PAPERS_FRESH_FOR seconds for every visitor (a preview then scans words, not
        text: ~1 ms, not ~50, for a day of 400 papers)."""
        with self._papers_lock:
            cached = self._papers
            if cached is not None and time.monotonic() - cached[0] < PAPERS_FRESH_FOR:
                return cached
            store = self.centre.directory.store
            newest = store.newest_first_seen()
            since = (newest or self.centre.clock()) - timedelta(days=1)
            papers = store.papers(since=since)
            words = paper_words(papers)
            # A reader never waits for the day's papers to be encoded (a minute for a new day's
            # listing, unless `digest run` fetched it here): words alone until the next read.
            pool = DescriptionScores([(p.title, p.abstract) for p in papers], wait_for_meaning=False)
            self._papers = (time.monotonic(), papers, words, pool)
            self._previews.clear()
            return self._papers


def paused_day(text: str, today: date) -> date | None:
    """A pause's end typed in a date field: None if not a day after today."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    return day if today < day <= today + timedelta(days=366) else None
