"""Schedules with a controlled clock: time zones, daylight-saving changes, runs missed while
the machine was down (sent once, not once per missed day; not at all past the grace period)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import load_config
from digest.deliver import Delivery
from digest.deliver.schedule import due_slot, fetch_trigger, last_slot, next_slot
from digest.store import Store
from digest.store.ledger import Ledger

from .smtp_server import SmtpServer
from .test_deliver import fetch_template, setup

pytestmark = [pytest.mark.clock, pytest.mark.database]  # also under faketime, and on PostgreSQL (.ci/run)

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.no_postgresql
def test_daily_slot_follows_the_local_clock_across_dst():
    # Berlin: CET (UTC+1) until 2026-03-29 02:00, CEST (UTC+2) after; back on 2026-10-25.
    assert next_slot("daily 07:30", BERLIN, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 5, 30)
    assert next_slot("daily 07:30", BERLIN, utc(2026, 3, 27, 12)) == utc(2026, 3, 28, 6, 30)
    assert next_slot("daily 07:30", BERLIN, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 6, 30)
    # A slot inside the skipped hour (02:30 on the spring-forward night) still happens, once:
    # at 03:30 CEST, the first instant after the gap.
    slots = []
    moment = utc(2026, 3, 27, 0)
    for _ in range(4):
        moment = next_slot("daily 02:30", BERLIN, moment)
        slots.append(moment)
    assert slots == [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    # A slot inside the repeated hour (02:30 on the fall-back night) happens once, not twice.
    slots, moment = [], utc(2026, 10, 23, 0)
    for _ in range(4):
        moment = next_slot("daily 02:30", BERLIN, moment)
        slots.append(moment)
    assert slots == [utc(2026, 10, 23, 0, 30), utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert last_slot("daily 02:30", BERLIN, utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)


@pytest.mark.no_postgresql
def test_weekdays_and_weekly():
    friday = utc(2026, 11, 20, 18)  # Friday 13:00 in New York, Saturday 03:00 in Tokyo
    assert next_slot("weekdays 08:00", "America/New_York", friday) == utc(2026, 11, 23, 13, 0)  # Monday 08:00 EST
    assert next_slot("weekly monday 08:00", "Asia/Tokyo", friday) == utc(2026, 11, 22, 23, 0)  # Monday 08:00 JST
    assert last_slot("weekly monday 08:00", "Asia/Tokyo", friday) == utc(2026, 11, 15, 23, 0)


@pytest.mark.no_postgresql
def test_due_slot_catch_up_once_within_grace(tmp_path):
    config_path = tmp_path / "c.yaml"
    config_path.write_text('sender: {from: "D <d@example.org>"}\ndefaults: {schedule: "daily 08:00", timezone: '
                           'Europe/Berlin, grace: 12h}\nsubscribers: [{email: a@example.org, topics: [{name: t, keywords: [x]}]}]\n')
    config = load_config(config_path)
    subscriber = config.subscribers[0]
    # Asleep from Monday evening to Thursday 09:30: only Thursday's 08:00 slot is due.
    assert due_slot(config, subscriber, utc(2026, 11, 26, 8, 30)) == utc(2026, 11, 26, 7, 0)
    # Woken at 21:00, past the 12 h grace: nothing is due until tomorrow.
    assert due_slot(config, subscriber, utc(2026, 11, 26, 20, 0)) is None
    assert due_slot(config, subscriber, utc(2026, 11, 25, 18, 59)) == utc(2026, 11, 25, 7, 0)  # 11:59 after: due
    assert due_slot(config, subscriber, utc(2026, 11, 26, 6, 59)) is None  # yesterday's is 24 h old


@pytest.fixture(scope="module")
def fetched_sunday(tmp_path_factory):
    """The samples fetched on Sunday evening, 2026-11-22, by the test's clock."""
    return fetch_template(tmp_path_factory.mktemp("sunday"), utc(2026, 11, 22, 20, 0))


@pytest.mark.database
def test_scheduled_delivery_with_a_controlled_clock(tmp_path, fetched_sunday):
    # Every clock the run depends on is the test's: the papers' first-seen times (the fetch),
    # the schedule and the ledger.
    with SmtpServer() as server:
        config_path = setup(tmp_path, fetched_sunday, server.port, ["a@example.org", "b@example.org"],
                            defaults="  schedule: daily 08:00\n  timezone: Europe/Berlin\n  lookback: 30d\n  send_empty: true\n")
        config = load_config(config_path)
        store = Store(config.database_url())
        clock = {"now": utc(2026, 11, 23, 6, 0)}  # 07:00 in Berlin: not yet due

        def run():
            return Delivery(config, store, clock=lambda: clock["now"]).run(scheduled=True)

        assert run() == []
        clock["now"] = utc(2026, 11, 23, 7, 0, 30)  # 08:00:30 Berlin
        assert [o.status for o in run()] == ["sent", "sent"]
        clock["now"] += timedelta(minutes=1)  # the next tick: nothing again (coalesced in the ledger)
        assert run() == []
        clock["now"] = utc(2026, 11, 26, 9, 0)  # down for three days: one digest each, not three
        assert [o.status for o in run()] == ["sent", "sent"]
        assert run() == []
        clock["now"] = utc(2026, 11, 29, 22, 0)  # past the grace: skipped, nothing sent
        assert run() == []
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter({"a@example.org": 2, "b@example.org": 2})
        # No paper arrived after the first digest: the second says so (send_empty), never repeats one.
        for who in ("a@example.org", "b@example.org"):
            first, second = (m.get_body(("plain",)).get_content() for m in server.handler.to(who))
            assert "## LLMs (5)" in first and "Nothing new matches your topics" in second
        periods = [e.period for e in Ledger(store).entries("a@example.org")]
        assert periods == ["2026-11-23T07:00+00:00", "2026-11-26T07:00+00:00"]


@pytest.mark.parametrize("schedule, now, due", [
    ("daily 07:30", utc(2026, 3, 29, 5, 31), utc(2026, 3, 29, 5, 30)),   # first CEST morning
    ("daily 07:30", utc(2026, 10, 25, 6, 31), utc(2026, 10, 25, 6, 30)),  # first CET morning
    ("weekdays 07:30", utc(2026, 11, 22, 7, 0), utc(2026, 11, 20, 6, 30)),  # Sunday: Friday's, if within grace
])
@pytest.mark.no_postgresql
def test_last_slot_examples(schedule, now, due):
    assert last_slot(schedule, BERLIN, now) == due


@pytest.mark.parametrize("spec, after, fires", [
    ("every 30m", utc(2026, 11, 23, 7, 0), [utc(2026, 11, 23, 7, 30), utc(2026, 11, 23, 8, 0)]),
    ("every 1h", utc(2026, 11, 23, 7, 0), [utc(2026, 11, 23, 8, 0), utc(2026, 11, 23, 9, 0)]),
    ("every 1.5h", utc(2026, 11, 23, 7, 0), [utc(2026, 11, 23, 8, 30), utc(2026, 11, 23, 10, 0)]),
    ("0 * * * *", utc(2026, 11, 23, 7, 10), [utc(2026, 11, 23, 8, 0), utc(2026, 11, 23, 9, 0)]),
    ("15 6 * * 1-5", utc(2026, 11, 20, 7, 0), [utc(2026, 11, 23, 6, 15), utc(2026, 11, 24, 6, 15)]),  # Friday → Monday
])
@pytest.mark.no_postgresql
def test_fetch_schedules(spec, after, fires):
    trigger = fetch_trigger(spec)
    if spec.startswith("every"):  # an interval counts from its start
        trigger.start_date = after
    first = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    assert [first, second] == fires


@pytest.mark.parametrize("days, expected", [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("0-6", "sun,mon,tue,wed,thu,fri,sat"),
    ("5-7", "fri,sat,sun"), ("1,3,5", "mon,wed,fri"), ("*/2", "sun,tue,thu,sat"), ("mon-fri", "mon-fri"), ("*", "*"),
])
@pytest.mark.no_postgresql
def test_cron_days_of_the_week_are_crons_not_apschedulers(days, expected):
    from digest.config import crontab_fields

    assert crontab_fields(f"0 6 * * {days}")["day_of_week"] == expected


@pytest.mark.no_postgresql
def test_fetch_schedule_in_a_time_zone():
    # five cron fields read in the given zone: 06:00 in Berlin is 05:00 UTC in winter
    trigger = fetch_trigger("0 6 * * *", "Europe/Berlin")
    assert trigger.get_next_fire_time(None, utc(2026, 11, 23, 0)) == utc(2026, 11, 23, 5, 0)
