"""When digests are due: `daily HH:MM`, `weekdays HH:MM`, `weekly DAY HH:MM` in a
subscriber's time zone, through APScheduler's cron trigger (it does the time-zone and
daylight-saving arithmetic). A slot is identified by its UTC instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..config import Config, Subscriber, crontab_fields, parse_duration

_DAYS = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
         "saturday": "sat", "sunday": "sun"}


@lru_cache(maxsize=4096)
def trigger(schedule: str, timezone: str) -> CronTrigger:
    """The cron trigger of a validated schedule string."""
    parts = schedule.split()
    hour, minute = parts[-1].split(":")
    if parts[0] == "daily":
        days = "*"
    elif parts[0] == "weekdays":
        days = "mon-fri"
    else:  # weekly DAY
        days = _DAYS.get(parts[1], parts[1][:3])
    return CronTrigger(day_of_week=days, hour=int(hour), minute=int(minute), timezone=ZoneInfo(timezone))


@lru_cache(maxsize=8192)  # a run asks for the same few schedules and zones at one instant, for everyone
def next_slot(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after `after`. When clocks go back, a wall-clock time happens
    twice (02:30 CEST, then 02:30 CET): the slot is the first of the two, never both."""
    cron = trigger(schedule, timezone)
    fire = cron.get_next_fire_time(None, after + timedelta(microseconds=1))
    assert fire is not None
    if fire.fold:  # the second 02:30 of the night
        fire = cron.get_next_fire_time(None, fire.astimezone(UTC) + timedelta(microseconds=1))
        assert fire is not None
    # In UTC: a wall-clock time inside the spring-forward gap compares unequal to every
    # instant (PEP 495), and a slot is an instant.
    return fire.astimezone(UTC)


@lru_cache(maxsize=8192)
def last_slot(schedule: str, timezone: str, now: datetime) -> datetime | None:
    """The latest slot at or before `now` (looking back at most eight days)."""
    found = None
    moment = next_slot(schedule, timezone, now - timedelta(days=8))
    while moment <= now:
        found = moment
        moment = next_slot(schedule, timezone, moment)
    return found


def receiving(config: Config, subscriber: Subscriber, now: datetime) -> bool:
    """Whether the subscriber gets digests now: enabled, and not paused until a later day
    (their day, in their time zone)."""
    if not subscriber.enabled:
        return False
    if subscriber.paused_until is None:
        return True
    zone = ZoneInfo(subscriber.timezone or config.defaults.timezone)
    return now.astimezone(zone).date() >= subscriber.paused_until


def subscriber_schedule(config: Config, subscriber: Subscriber) -> tuple[str, str]:
    return (subscriber.schedule or config.defaults.schedule, subscriber.timezone or config.defaults.timezone)


def due_slot(config: Config, subscriber: Subscriber, now: datetime) -> datetime | None:
    """The slot a digest is due for now: the latest one, if not older than the grace period
    (a laptop asleep at 08:00 sends at 09:30; after a week away it does not send seven)."""
    schedule, timezone = subscriber_schedule(config, subscriber)
    slot = last_slot(schedule, timezone, now)
    if slot is None or now - slot > config.defaults.grace:
        return None
    return slot


def fetch_trigger(spec: str, timezone: str = "UTC") -> CronTrigger | IntervalTrigger:
    """`every 1h` / `every 30m`, or five cron fields (`0 * * * *`)."""
    if spec.startswith("every "):
        return IntervalTrigger(seconds=parse_duration(spec.split(None, 1)[1]).total_seconds(),
                               timezone=ZoneInfo(timezone))
    return CronTrigger(**crontab_fields(spec), timezone=ZoneInfo(timezone))
