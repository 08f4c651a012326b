"""The subscriber directory: subscribers.yaml synced into the database once per change, what is
due found by one indexed query on a stored next-due time, workers reading subscribers from it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from digest.config import Config, Sender, Subscriber, Topic
from digest.deliver import Delivery, roster
from digest.store import Ledger, Store
from digest.store.directory import Directory

from .conftest import DATABASE, fresh_database
from .test_deliver import fetched  # noqa: F401 - the fixture

pytestmark = [pytest.mark.database]

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


def config(subscribers: list[Subscriber], **defaults) -> Config:
    return Config(sender=Sender(**{"from": "Digest <digest@example.org>"}), subscribers=subscribers,
                  defaults={"schedule": "daily 08:00", "timezone": "UTC", **defaults})


def person(n: int, **extra) -> Subscriber:
    extra.setdefault("topics", [Topic(name="KV", keywords=["KV cache"])])
    return Subscriber(email=f"Reader{n}@Example.org", name=f"Reader {n}", **extra)


class Statements:
    """Counts the SQL statements a store's engine runs (SQLite's BEGIN IMMEDIATE aside)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        sa.event.listen(store.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        self.count += not statement.startswith("BEGIN")


@pytest.fixture
def store(tmp_path) -> Store:
    made = Store(fresh_database(tmp_path))
    made.migrate()
    return made


def test_subscribers_yaml_is_synced_once_per_change(store):
    directory = Directory(store)
    people = [person(1), person(2, schedule="weekly monday 06:00", timezone="Europe/Berlin"), person(3)]
    first = roster.sync(config(people), directory, MONDAY)
    assert (first.added, first.changed, first.removed) == (3, 0, 0)
    rows = directory.get(["reader1@example.org", "reader2@example.org", "reader3@example.org"])
    assert [roster.subscriber(rows[k]) for k in sorted(rows)] == people  # the settings round-trip whole
    assert rows["reader2@example.org"].next_due == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 06:00 CET today
    assert rows["reader1@example.org"].next_due == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

    statements = Statements(store)
    assert roster.sync(config(people), directory, MONDAY).skipped and statements.count == 1  # unchanged: one query

    people[0] = person(1, topics=[Topic(name="Agents", keywords=["agent"])])  # topics: next_due kept
    people[2] = person(3, schedule="daily 10:00")  # schedule: next_due anew
    people[1] = person(2, schedule="weekly monday 06:00", timezone="Europe/Berlin", enabled=False)  # paused
    later = MONDAY + timedelta(hours=3)
    directory.advance([("reader1@example.org", MONDAY + timedelta(days=1, hours=-1))], MONDAY)
    changed = roster.sync(config(people + [person(4)]), directory, later)
    assert (changed.added, changed.changed, changed.removed) == (1, 3, 0)
    rows = directory.get(["reader1@example.org", "reader2@example.org", "reader3@example.org"])
    assert rows["reader1@example.org"].next_due == MONDAY + timedelta(days=1, hours=-1)
    assert roster.subscriber(rows["reader1@example.org"]).topics[0].name == "Agents"
    assert rows["reader3@example.org"].next_due == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert rows["reader2@example.org"].next_due is None  # paused: never due

    removed = roster.sync(config(people[:1]), directory, later)
    assert removed.removed == 3 and directory.count() == 1


def test_what_is_due_is_one_indexed_query(store):
    directory = Directory(store)
    with store.engine.connect() as conn:
        if DATABASE == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a small table: ask whether the index serves
            plan = " ".join(r[0] for r in conn.exec_driver_sql(
                "EXPLAIN SELECT * FROM subscribers WHERE next_due <= '2026' ORDER BY next_due, key LIMIT 500"))
        else:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM subscribers WHERE next_due <= '2026' ORDER BY next_due, key LIMIT 500"))
    assert "subscribers_next_due" in plan, plan
    people = [person(n, schedule=f"daily {n % 24:02d}:00") for n in range(60)]
    roster.sync(config(people), directory, MONDAY - timedelta(days=1))  # everyone's next_due: within the last day
    due = directory.due(MONDAY, limit=7)
    assert len(due) == 7 and [r.next_due for r in due] == sorted(r.next_due for r in due)
    pages, after = [], None
    while page := directory.due(MONDAY, limit=7, after=after):
        pages += page
        after = (page[-1].next_due, page[-1].key)
    assert len(pages) == len({r.key for r in pages}) == 60


def test_the_minute_check_costs_the_same_for_200_or_2000_subscribers(tmp_path):
    """`digest run` asks every minute what is due: when nothing is, a few queries, whatever the
    number of subscribers (before: two ledger queries per 500 subscribers and a slot computed
    for each)."""
    counts = []
    for size in (200, 2000):
        store = Store(fresh_database(tmp_path, f"s{size}.db"))
        store.migrate()
        cfg = config([person(n) for n in range(size)])
        Delivery(cfg, store, clock=lambda: MONDAY).run(scheduled=True)  # today's slot planned (all empty)
        statements = Statements(store)
        assert Delivery(cfg, store, clock=lambda: MONDAY + timedelta(minutes=30)).run(scheduled=True) == []
        counts.append(statements.count)
    assert counts[0] == counts[1] and counts[1] <= 12, counts


def test_a_week_of_minute_checks_plans_each_slot_once(tmp_path):
    store = Store(fresh_database(tmp_path))
    store.migrate()
    cfg = config([person(1), person(2, schedule="weekdays 07:00", timezone="America/New_York"),
                  person(3, schedule="weekly sunday 20:00", timezone="Asia/Tokyo")])
    moment = MONDAY
    while moment < MONDAY + timedelta(days=7):
        Delivery(cfg, store, clock=lambda m=moment: m).run(scheduled=True, work=False)
        moment += timedelta(minutes=47)  # ticks that never land on a slot's minute
    periods: dict[str, list[str]] = {}
    for entry in Ledger(store).entries():
        periods.setdefault(entry.subscriber, []).append(entry.period)
    # daily 08:00 UTC: today's (an hour ago, within the grace period) and the next seven
    assert len(periods["reader1@example.org"]) == 8 and periods["reader1@example.org"][0] == "2026-11-23T08:00+00:00"
    assert len(periods["reader2@example.org"]) == 5 and all(p.endswith("T12:00+00:00")
                                                             for p in periods["reader2@example.org"])
    assert periods["reader3@example.org"] == ["2026-11-29T11:00+00:00"]  # Sunday 20:00 JST
    assert all(len(set(p)) == len(p) for p in periods.values())


def test_a_missed_slot_past_the_grace_period_is_skipped_not_sent_late(tmp_path):
    store = Store(fresh_database(tmp_path))
    store.migrate()
    cfg = config([person(1)])  # daily 08:00, grace 12 h
    roster.sync(cfg, Directory(store), MONDAY - timedelta(days=3))  # next_due: Friday 08:00
    Delivery(cfg, store, clock=lambda: MONDAY).run(scheduled=True, work=False)  # back on Monday at 09:00
    assert [e.period for e in Ledger(store).entries()] == ["2026-11-23T08:00+00:00"]  # today's only
    assert Directory(store).get(["reader1@example.org"])["reader1@example.org"].next_due == MONDAY + timedelta(hours=23)


def test_many_processes_sync_the_same_subscribers_at_once(store):
    people = [person(n) for n in range(1200)]
    barrier = threading.Barrier(4)
    errors = []

    def sync() -> None:
        barrier.wait()
        try:
            roster.sync(config(people), Directory(store), MONDAY)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and Directory(store).count() == 1200


def test_a_worker_skips_the_files_subscribers_and_never_syncs_them_away(tmp_path):
    """A large subscribers.yaml, once parsed (and cached), loads for a worker without its
    subscribers; such a configuration never syncs (it would remove everyone)."""
    from digest.config import load_config

    people = "".join(f"  - email: reader{n}@example.org\n    topics: [{{name: KV, keywords: [KV cache, kv{n}]}}]\n"
                     for n in range(1500))
    path = tmp_path / "subscribers.yaml"
    path.write_text(f'sender:\n  from: "Digest <digest@example.org>"\nstate: {fresh_database(tmp_path)}\n'
                    f"subscribers:\n{people}", encoding="utf-8")
    full = load_config(path)  # parses the YAML, writes the cache
    assert len(full.subscribers) == 1500 and full.subscribers_read
    store = Store(full.database_url())
    store.migrate()
    roster.sync(full, Directory(store), MONDAY)
    worker = load_config(path, subscribers=False)
    assert worker.subscribers == [] and not worker.subscribers_read
    assert worker.sender == full.sender and worker.database_url() == full.database_url()
    assert roster.sync(worker, Directory(store), MONDAY).skipped and Directory(store).count() == 1500
    path.write_text(path.read_text(encoding="utf-8") + "  - email: new@example.org\n    topics: [{name: A, keywords: [a]}]\n",
                    encoding="utf-8")
    assert load_config(path, subscribers=False).subscribers_read  # changed: no cache yet, read whole


def test_a_large_files_send_reads_subscribers_from_the_database_and_changes_reach_it(tmp_path, fetched):  # noqa: F811
    """`digest send` of everyone loads a large file without its subscribers (from the parsed-file
    cache) and sends to the directory's; a change to the file is synced before the plan."""
    from .smtp_server import SmtpServer
    from .test_deliver import digest_cli, setup

    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, ["a@example.org", "b@example.org"])
        config.write_text("# a large file: parsed once per change, then read from the cache\n" * 2000
                          + config.read_text(encoding="utf-8"), encoding="utf-8")
        first = digest_cli("send", config=config)  # the first read parses the YAML (and caches it)
        assert first.returncode == 0 and "2 sent" in first.stdout, first.stdout + first.stderr
        config.write_text(config.read_text(encoding="utf-8") + "  - email: c@example.org\n    topics:\n"
                          "      - name: LLMs\n        keywords: [language model, LLM]\n", encoding="utf-8")
        assert digest_cli("status", config=config).returncode == 0  # reads the changed file whole: cached
        second = digest_cli("send", config=config)  # from the cache without subscribers; the file changed
        assert second.returncode == 0 and "1 sent" in second.stdout, second.stdout + second.stderr
        assert sorted(str(m["To"]) for m in server.handler.received) == ["a@example.org", "b@example.org",
                                                                          "c@example.org"]


def test_status_asks_the_ledger_per_batch_not_per_subscriber(tmp_path):
    from digest.deliver.status import subscriber_status
    from digest.store.ledger import subscriber_key

    store = Store(fresh_database(tmp_path))
    store.migrate()
    ledger = Ledger(store)
    people = [person(n) for n in range(1200)]
    for n, entry_state in ((3, "sent"), (3, "failed"), (7, "sent"), (700, "sent"), (1100, "pending")):
        period = f"2026-11-{20 + len(ledger.entries(people[n].email)):02d}T08:00+00:00"
        entry, _ = ledger.record(people[n].email, period, f"<m{n}>", ["x"], MONDAY)
        if entry_state == "sent":
            ledger.sent(entry, MONDAY)
        elif entry_state == "failed":
            ledger.failed(entry, "550 no such user", MONDAY, suspend_after=1)
    cfg = config(people)
    roster.sync(cfg, Directory(store), MONDAY)  # as any run before has
    statements = Statements(store)
    rows = {r["subscriber"]: r for r in subscriber_status(cfg, store, MONDAY)}
    # per 500: window starts, delivered papers, latest digests, sent counts, states; and the papers;
    # the subscribers (of every origin) from the directory: whether the file changed, 3 pages and the end;
    # whether anyone's ratings taught a model (none here: one question)
    assert statements.count <= 5 * 3 + 2 + 1 + 4 + 1, statements.count
    for n in (3, 7, 700, 1100, 5):
        entries = ledger.entries(people[n].email)
        assert rows[people[n].email]["last_state"] == (entries[-1].state if entries else None)
        assert rows[people[n].email]["digests_sent"] == sum(e.state == "sent" for e in entries)
    assert rows[people[3].email]["status"] == "suspended" and rows[people[3].email]["digests_sent"] == 1
    assert subscriber_key(people[3].email) == "reader3@example.org"
