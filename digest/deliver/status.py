"""`digest status`: per subscriber, the last digest, the next one due, papers waiting, failures."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Config
from ..match.newly_seen import BATCH, newly_seen
from ..store.database import Store
from ..store.directory import Directory
from ..store.ledger import Entry, Ledger, SubscriberState
from . import roster
from .schedule import next_slot, receiving, subscriber_schedule


def subscriber_status(config: Config, store: Store, now: datetime) -> list[dict[str, Any]]:
    ledger = Ledger(store)
    everyone = list(roster.everyone(config, Directory(store), now))  # subscribers.yaml's and the database's
    _, waiting_digests = newly_seen(config, store, everyone, now, ledger=ledger)
    rows = []
    summaries: dict[str, tuple[Entry | None, int]] = {}
    states: dict[str, SubscriberState] = {}
    for at, (subscriber, waiting) in enumerate(zip(everyone, waiting_digests)):
        if at % BATCH == 0:  # the ledger asked twice per BATCH subscribers, not per subscriber
            batch = [s.email for s in everyone[at:at + BATCH]]
            summaries, states = ledger.summaries(batch), ledger.states(batch)
        last, sent = summaries[subscriber.email]
        state = states[subscriber.email]
        schedule, zone = subscriber_schedule(config, subscriber)
        upcoming = next_slot(schedule, zone, now)
        rows.append({
            "subscriber": subscriber.email,
            "schedule": f"{schedule} {zone}",
            # The latest digest recorded: its slot (both fields the same moment), its state, and
            # when it was sent (None while it is planned, deferred, uncertain, or failed)
            "last_digest": last.period if last else None,
            "last_digest_local": _local(_slot(last.period) or last.created_at, zone) if last else None,
            "last_state": last.state if last else None,
            "last_sent": last.sent_at.isoformat(timespec="seconds") if last and last.sent_at else None,
            "last_sent_local": _local(last.sent_at, zone) if last and last.sent_at else None,
            "last_error": last.last_error if last and last.state != "sent" else None,
            "next_due": upcoming.isoformat(),
            "next_due_local": _local(upcoming, zone),
            "papers_waiting": len(waiting.papers),
            "digests_sent": sent,
            "hard_failures": state.hard_failures,
            "suspended": state.suspended_at is not None,
            "suspended_reason": state.suspended_reason,
            "unsubscribed": state.unsubscribed_at is not None,
            "enabled": subscriber.enabled,
            "paused_until": subscriber.paused_until.isoformat() if subscriber.paused_until else None,
            "status": state.status(receiving(config, subscriber, now)),
        })
    return rows


def _slot(period: str) -> datetime | None:
    """A ledger period as a moment (the slot it is for), None for one that is not a time."""
    try:
        moment = datetime.fromisoformat(period)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")
