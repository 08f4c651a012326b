"""The configuration's subscribers into the directory (once per change), and back as Subscribers.

The directory (store/directory.py) holds each subscriber's settings as JSON and the time their
next digest is due; this module decides what those are: the settings as the model writes them,
the effective schedule and time zone, and the first slot due after a change (the latest slot
already begun, so a subscriber added at 07:31 still gets today's 07:30 digest within the grace
period, as before).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache

from ..config import Config, Subscriber, load_config
from ..errors import UnknownSubscriber
from ..store.directory import Directory, Listed, Synced, Wanted
from ..store.ledger import subscriber_key
from .schedule import last_slot, next_slot, subscriber_schedule

ORIGIN = "config"

log = logging.getLogger(__name__)


def profile(subscriber: Subscriber) -> str:
    """A subscriber's settings as JSON: what they wrote, defaults left out, keys in order."""
    return json.dumps(subscriber.model_dump(mode="json", exclude_defaults=True), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def as_wanted(config: Config, subscriber: Subscriber) -> Wanted:
    """A subscriber as the directory is to hold them (their effective schedule and time zone)."""
    schedule, timezone = subscriber_schedule(config, subscriber)
    return Wanted(subscriber_key(subscriber.email), subscriber.email, profile(subscriber), schedule, timezone,
                  subscriber.enabled)


def wanted(config: Config) -> Iterator[Wanted]:
    for subscriber in config.subscribers:
        yield as_wanted(config, subscriber)


def fingerprint(config: Config) -> str:
    """What the directory's copy was synced from: the file's text (any change re-syncs), or,
    for a configuration made in code, its subscribers' settings."""
    if config.source_sha256 is not None:
        return f"file:{config.source_sha256}"
    digest = hashlib.sha256()
    for want in wanted(config):
        digest.update(json.dumps([want.profile, want.schedule, want.timezone]).encode())
    return digest.hexdigest()


def sync(config: Config, directory: Directory, now: datetime) -> Synced:
    """subscribers.yaml's subscribers into the directory; one query when the file has not
    changed since the last sync. A configuration loaded without its subscribers (see
    load_config) reads the file whole only when it has changed."""
    current = fingerprint(config)
    if directory.fingerprint(ORIGIN) == current:
        return Synced(skipped=True)
    if not config.subscribers_read:
        config = load_config(config.path)
        current = fingerprint(config)  # the file as read now
    synced = directory.sync(ORIGIN, wanted(config), current, now,
                            lambda schedule, timezone: first_due(schedule, timezone, now))
    follow_defaults(config, directory, now)
    if synced.shadowed:
        log.warning("%d subscribers in %s are managed in the database, where their settings were changed; "
                    "the file's entries for them are ignored: %s", len(synced.shadowed), config.path,
                    ", ".join(synced.shadowed[:5]) + (" …" if len(synced.shadowed) > 5 else ""))
    return synced


def follow_defaults(config: Config, directory: Directory, now: datetime) -> int:
    """The database's subscribers who set no schedule or time zone of their own follow the
    configuration's defaults (as subscribers.yaml's do): after an edit of `defaults.schedule`
    or `defaults.timezone`, their rows, which hold the schedule the planner's index reads, are
    brought in line. An imported list kept the default of the day it was imported: the slot
    of the new default went unsent while `digest status` said it was due. Once per change;
    returns how many subscribers changed."""
    current = hashlib.sha256(json.dumps([config.defaults.schedule, config.defaults.timezone]).encode()).hexdigest()
    if directory.store.setting("defaults-schedule") == current:
        return 0
    changed = 0
    for page in directory.pages():
        for row in page:
            if row.origin == ORIGIN:
                continue  # the file's: synced from it
            want = as_wanted(config, subscriber(row))
            if (want.schedule, want.timezone) != (row.schedule, row.timezone):
                changed += directory.claim(row.origin, want, now, lambda schedule, timezone: first_due(schedule, timezone, now))
    directory.store.put_setting("defaults-schedule", current)
    if changed:
        log.info("defaults changed: %d subscribers of the database follow the new schedule or time zone", changed)
    return changed


def refresh_presets(config: Config, directory: Directory, now: datetime) -> int:
    """Topics picked from the catalogue (`presets:`) as the catalogue has them now: after an
    edit of a preset, everyone who picked it gets the new definition; a preset taken out of the
    catalogue stays with them as a topic of their own (never silently dropped). Rows of
    subscribers.yaml are the file's to say. Once per change of the catalogue; returns how
    many subscribers changed."""
    catalogue = {topic.name: topic for topic in config.presets}
    current = hashlib.sha256(json.dumps([t.model_dump(mode="json", exclude_defaults=True) for t in config.presets],
                                        sort_keys=True).encode()).hexdigest()
    if directory.store.setting("presets") == current:
        return 0
    changed = 0
    for page in directory.pages():
        for row in page:
            if row.origin == ORIGIN or '"preset":' not in row.profile:
                continue
            before = subscriber(row)
            topics = [(catalogue[t.preset].model_copy(update={"preset": t.preset}) if t.preset in catalogue
                       else t.model_copy(update={"preset": None})) if t.preset is not None else t
                      for t in before.topics]
            if topics != before.topics:
                after = before.model_copy(update={"topics": topics})
                changed += directory.claim(row.origin, as_wanted(config, after), now,
                                           lambda schedule, timezone: first_due(schedule, timezone, now))
    directory.store.put_setting("presets", current)
    if changed:
        log.info("presets changed: %d subscribers' picked topics follow the catalogue", changed)
    return changed


def everyone(config: Config, directory: Directory, now: datetime) -> Iterator[Subscriber]:
    """Every subscriber, of every origin (the directory, synced first), by address."""
    return (subscriber(row) for row in everyone_listed(config, directory, now))


def everyone_listed(config: Config, directory: Directory, now: datetime) -> Iterator[Listed]:
    """Every subscriber's directory row (synced first), by address."""
    sync(config, directory, now)
    for page in directory.pages():
        yield from page


def find(config: Config, directory: Directory, emails: Sequence[str], now: datetime) -> list[Subscriber]:
    """The subscribers with these addresses (any case, any origin), in that order; a user
    error with a suggestion for the first that is nobody's."""
    return [subscriber(row) for row in find_listed(config, directory, emails, now)]


def find_listed(config: Config, directory: Directory, emails: Sequence[str], now: datetime) -> list[Listed]:
    """As `find`, their directory rows (with what a Subscriber does not hold: the manage-link
    generation, say)."""
    sync(config, directory, now)
    found = directory.get([subscriber_key(e) for e in emails])
    missing = [e for e in emails if subscriber_key(e) not in found]
    if missing:  # a did-you-mean among every address, the file's and the database's
        known = [row.email for page in directory.pages() for row in page]
        close = difflib.get_close_matches(missing[0], known, n=1)
        raise UnknownSubscriber(f"no subscriber {missing[0]!r} in {config.path} or the database",
                                hint=f"did you mean {close[0]!r}?" if close else "`digest subscribers list` shows them all")
    return [found[subscriber_key(e)] for e in emails]


def first_due(schedule: str, timezone: str, now: datetime) -> datetime:
    """The latest slot already begun (the planner skips it if it is past the grace period)."""
    return last_slot(schedule, timezone, now) or next_slot(schedule, timezone, now)


@lru_cache(maxsize=4096)
def _subscriber(profile_json: str) -> Subscriber:
    # Stored: checked when it was saved; a rule added since (names of their own) does not stop its digests
    return Subscriber.model_validate_json(profile_json, context={"stored": True})


def subscriber(listed: Listed) -> Subscriber:
    """The Subscriber a directory row holds (the same settings recur: validated once)."""
    return _subscriber(listed.profile)
