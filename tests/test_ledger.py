"""The ledger and the send loop in-process, on a controlled clock: every state change, each
rule of recovery and suspension, each outcome of a run, against real SQLite and a real SMTP
server on loopback. (The kill -9 and concurrent-process tests are in test_deliver.)"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import load_config
from digest.deliver import Delivery
from digest.deliver.smtp import SmtpConfigError
from digest.store import Ledger, Store
from digest.store.identity import known_gone, namespace
from digest.store.ledger import ACTIVE_RUNS, CLAIM_LEASE, LEASE, Planned, owner_id

from .conftest import fresh_database
from .smtp_server import SmtpServer
from .test_deliver import fetch_template, setup

pytestmark = [pytest.mark.clock, pytest.mark.database]  # database: run on PostgreSQL too (.ci/run)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, after everyone's 07:30 slot


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """The samples, fetched once into the backend under test (DIGEST_TEST_DATABASE)."""
    return fetch_template(tmp_path_factory.mktemp("ledger"), T0 - timedelta(hours=10))


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(Store(fresh_database(tmp_path)))


# ---------------------------------------------------------------- the ledger's states


def test_record_once_per_subscriber_and_period(ledger):
    entry, created = ledger.record("A@Example.org", "p1", "<m1>", ["x", "y"], T0)
    assert created and entry.state == "pending" and entry.papers == ("x", "y") and entry.attempts == 0
    assert entry.subscriber == "a@example.org" and entry.message_id == "<m1>" and entry.created_at == T0
    again, created = ledger.record("a@example.org", "p1", "<m2>", ["z"], T0 + timedelta(hours=1))
    assert not created and again == entry  # as it was recorded
    other, created = ledger.record("a@example.org", "p2", "<m3>", ["z"], T0)
    assert created and other.id != entry.id
    assert [e.period for e in ledger.entries("a@example.org")] == ["p1", "p2"]
    assert ledger.entry("a@example.org", "p1") == entry and ledger.entry("a@example.org", "p3") is None


def test_claim_send_sent(ledger):
    entry, _ = ledger.record("a@example.org", "p1", "<m>", ["x", "y"], T0)
    assert ledger.claim(entry.id, T0, "me")
    assert not ledger.claim(entry.id, T0, "someone-else")  # claimed: nobody else gets it
    assert ledger.entry("a@example.org", "p1").state == "claimed"
    ledger.sending(entry.id, T0)
    assert ledger.entry("a@example.org", "p1").state == "sending"
    assert ledger.delivered("a@example.org") == set()  # not before the server said 250
    ledger.sent(entry, T0 + timedelta(seconds=1))
    done = ledger.entry("a@example.org", "p1")
    assert done.state == "sent" and done.sent_at == T0 + timedelta(seconds=1) and done.last_error is None
    assert ledger.delivered("a@example.org") == {"x", "y"}
    assert ledger.delivered("a@example.org", among=["y", "z"]) == {"y"}
    assert not ledger.claim(entry.id, T0, "me")  # sent: never claimed again


@pytest.mark.undated
def test_sending_marks_from_many_threads_share_commits_each_committed_on_return(ledger):
    """Eight threads mark at once (as eight SMTP connections do): fewer transactions than marks,
    and every mark, with the digests it carries as sent, is in the database when it returns;
    a claim lost to another worker answers False for that digest only."""
    entries = [ledger.record(f"r{n}@example.org", "p1", f"<m{n}>", ["x"], T0)[0] for n in range(64)]
    for e in entries:
        assert ledger.claim(e.id, T0, "me" if e.id != entries[5].id else "other")
    reader = Ledger(ledger.store)
    start, seen = threading.Barrier(8), []

    def worker(mine: list) -> None:
        start.wait()
        previous = None
        for e in mine:
            ok = ledger.sending(e.id, T0, "me", accepted=[previous] if previous else [])
            now = {x.id: x.state for x in reader.entries()}  # another connection sees it at once
            seen.append((e.id, ok, now[e.id], now[previous.id] if previous else "sent"))
            previous = e if ok else None
        if previous:
            ledger.sent_all([previous], T0)

    threads = [threading.Thread(target=worker, args=(entries[n::8],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 64
    assert all(ok == (state == "sending") and before == "sent" for _, ok, state, before in seen
               if _ != entries[5].id), seen
    assert [ok for i, ok, _, _ in seen if i == entries[5].id] == [False]
    assert Counter(e.state for e in reader.entries()) == Counter({"sent": 63, "claimed": 1})
    assert ledger._marks.batches < 64, ledger._marks.batches


@pytest.mark.no_postgresql
def test_group_commit_hands_each_caller_its_result_or_its_batchs_error():
    from digest.store.group_commit import GroupCommit
    batches: list[list[int]] = []
    gate = threading.Event()

    def execute(items):
        batches.append(list(items))
        if len(batches) == 1:
            gate.wait(5)  # the first commit is slow: the others gather behind it
        if 13 in items:
            raise ValueError("bad batch")
        return [i * 10 for i in items]

    group = GroupCommit(execute)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(1,))
    first.start()
    while not batches:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=(i,)) for i in (2, 3, 13)]
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert batches[0] == [1] and sorted(batches[1]) == [2, 3, 13] and len(batches) == 2
    assert results[1] == 10
    assert all(isinstance(results[i], ValueError) for i in (2, 3, 13))  # rolled back together
    assert group.submit(4) == 40  # and the next caller commits at once


def test_deferred_goes_back_to_pending_with_the_error(ledger):
    entry, _ = ledger.record("a@example.org", "p1", "<m>", ["x"], T0)
    ledger.claim(entry.id, T0, "me")
    ledger.deferred(entry.id, "451 busy", T0)
    ledger.claim(entry.id, T0, "me")
    ledger.deferred(entry.id, "451 still busy", T0)
    back = ledger.entry("a@example.org", "p1")
    assert back.state == "pending" and back.attempts == 2 and back.last_error == "451 still busy"
    assert ledger.claim(entry.id, T0, "another run")  # free to take again


def test_permanent_failures_suspend_after_the_limit_and_a_success_resets(ledger):
    def fail(period: str) -> bool:
        entry, _ = ledger.record("a@example.org", period, "<m>", ["x"], T0)
        return ledger.failed(entry, "550 no such user", T0, suspend_after=3)

    assert [fail("p1"), fail("p2")] == [False, False]
    assert ledger.state("a@example.org").hard_failures == 2 and ledger.state("a@example.org").active
    good, _ = ledger.record("a@example.org", "p3", "<m>", ["x"], T0)
    ledger.sent(good, T0)
    assert ledger.state("a@example.org").hard_failures == 0  # failures count in a row
    assert [fail("p4"), fail("p5"), fail("p6")] == [False, False, True]
    state = ledger.state("a@example.org")
    assert state.suspended_at == T0 and state.suspended_reason == "550 no such user" and not state.active
    failed = ledger.entry("a@example.org", "p6")
    assert failed.state == "failed" and failed.attempts == 1 and failed.last_error == "550 no such user"
    assert fail("p7") is False  # already suspended: not suspended again
    ledger.resume("a@example.org")
    assert ledger.state("a@example.org").active and ledger.state("a@example.org").hard_failures == 0


def test_unsubscribe_resubscribe_and_resume(ledger):
    ledger.unsubscribe("A@example.org", T0)
    assert ledger.state("a@example.org").unsubscribed_at == T0 and not ledger.state("a@example.org").active
    ledger.resubscribe("a@example.org")
    assert ledger.state("a@example.org").active
    for period in ("p1", "p2"):
        entry, _ = ledger.record("a@example.org", period, "<m>", ["x"], T0)
        ledger.failed(entry, "550", T0, suspend_after=2)
    ledger.unsubscribe("a@example.org", T0)
    ledger.resubscribe("a@example.org")  # the reader's own undo lifts an unsubscription only
    assert ledger.state("a@example.org").suspended_at is not None
    ledger.resume("a@example.org")  # the admin's lifts both
    assert ledger.state("a@example.org").active
    assert ledger.state("b@example.org").active and ledger.state("b@example.org").hard_failures == 0


def test_the_window_starts_at_the_last_completed_digest(ledger):
    assert ledger.window_start("a@example.org") is None
    sent, _ = ledger.record("a@example.org", "p1", "<m>", ["x"], T0)
    ledger.sent(sent, T0)
    ledger.record("a@example.org", "p2", "<m>", ["y"], T0 + timedelta(days=1))  # pending: not completed
    failed, _ = ledger.record("a@example.org", "p3", "<m>", ["y"], T0 + timedelta(days=2))
    ledger.failed(failed, "550", T0, suspend_after=9)
    assert ledger.window_start("a@example.org") == T0
    empty, _ = ledger.record("a@example.org", "p4", "<m>", [], T0 + timedelta(days=3), state="empty")
    assert ledger.window_start("a@example.org") == T0 + timedelta(days=3)  # an empty digest completes too
    assert ledger.window_start("b@example.org") is None


def test_delivered_since(ledger):
    old, _ = ledger.record("a@example.org", "p1", "<m>", ["old"], T0 - timedelta(days=10))
    new, _ = ledger.record("a@example.org", "p2", "<m>", ["new"], T0)
    ledger.sent(old, T0)
    ledger.sent(new, T0)
    assert ledger.delivered("a@example.org", since=T0 - timedelta(days=1)) == {"new"}
    assert ledger.delivered("a@example.org", since=T0) == {"new"}  # at the instant: included
    assert ledger.delivered("a@example.org") == {"old", "new"}


def test_a_plan_rematches_only_a_pending_digest(ledger):
    entry, _ = ledger.record("a@example.org", "p1", "<m>", ["x"], T0)

    def rematch(papers: list[str], at: datetime, state: str = "pending") -> None:
        ledger.plan([], [(entry.id, Planned("a@example.org", "p1", "<m>", tuple(papers), "{}", state))], [], at)

    rematch(["x", "y"], T0 + timedelta(hours=1))
    again = ledger.entry("a@example.org", "p1")
    assert again.papers == ("x", "y") and again.matched_at == T0 + timedelta(hours=1) and again.state == "pending"
    assert again.planned_at == T0 + timedelta(hours=1) and again.content == "{}"
    rematch([], T0 + timedelta(hours=2), state="empty")
    assert ledger.entry("a@example.org", "p1").state == "empty"
    rematch(["z"], T0 + timedelta(hours=3))  # no longer pending: unchanged
    assert ledger.entry("a@example.org", "p1").papers == ()


def test_recovery_sends_again_what_a_dead_run_left(ledger):
    dead = subprocess_pid_that_exited()
    here = socket.gethostname()
    ours = f"{here}:{dead}:{namespace()}.1."  # a process of this pid namespace that has ended
    # Another container: the same hostname and a pid that means nothing here (this process's own).
    container = f"{here}:{os.getpid()}:0123456789abcdef-4026531836.1."
    entries = {}
    for name, owner, state, age, lease in [
        ("dead-claimed", ours + "r", "claimed", timedelta(0), CLAIM_LEASE),
        ("dead-sending", ours + "r", "sending", timedelta(0), CLAIM_LEASE),
        ("live-run", owner_id("live"), "sending", timedelta(0), CLAIM_LEASE),
        ("ended-run", owner_id("ended"), "claimed", timedelta(0), CLAIM_LEASE),
        ("far-fresh", "elsewhere:123:r", "claimed", LEASE - timedelta(minutes=1), LEASE),
        ("far-stale", "elsewhere:123:r", "sending", LEASE + timedelta(minutes=1), LEASE),
        ("box-fresh", container + "r", "claimed", timedelta(seconds=50), timedelta(minutes=1)),
        ("box-stale", container + "r", "sending", timedelta(seconds=70), timedelta(minutes=1)),
        ("pending", None, "pending", timedelta(0), CLAIM_LEASE),
    ]:
        entry, _ = ledger.record(f"{name}@example.org", "p", "<m>", ["x"], T0 - age)
        if state != "pending":
            ledger.claim(entry.id, T0 - age, owner, lease=lease)
            if state == "sending":
                ledger.sending(entry.id, T0 - age)
        entries[name] = entry
    ACTIVE_RUNS.add("live")
    try:
        assert ledger.recover(T0) == 5
    finally:
        ACTIVE_RUNS.discard("live")
    states = {name: ledger.entry(f"{name}@example.org", "p").state for name in entries}
    # claimed: the end of the message never went out, so the server has nothing: send again;
    # sending: the server may have it: uncertain. Holders elsewhere: their lease decides.
    assert states == {"dead-claimed": "pending", "dead-sending": "uncertain", "live-run": "sending",
                      "ended-run": "pending", "far-fresh": "claimed", "far-stale": "uncertain",
                      "box-fresh": "claimed", "box-stale": "uncertain", "pending": "pending"}
    assert "sent again" in ledger.entry("dead-claimed@example.org", "p").last_error
    assert "the server may have it" in ledger.entry("dead-sending@example.org", "p").last_error


@pytest.mark.no_postgresql
def test_an_identity_tells_processes_apart_where_hostname_and_pid_do_not():
    me = owner_id("r")
    host, pid, tag = me.split(":", 2)
    assert host == socket.gethostname() and pid == str(os.getpid())
    assert tag.startswith(namespace() + ".") and namespace()
    ACTIVE_RUNS.add("r")
    try:
        assert known_gone(me) is False
    finally:
        ACTIVE_RUNS.discard("r")
    assert known_gone(me) is True  # this process, a run that ended
    # The same pid in the same namespace, started at another time: the pid was reused.
    assert known_gone(f"{host}:{pid}:{namespace()}.0.r") is True
    assert known_gone(f"{host}:{pid}:ffff-1.{tag.split('.')[1]}.r") is None  # another namespace: the lease decides
    assert known_gone(f"{host}:{pid}:r") is None  # an older version's: the lease decides
    assert known_gone(None) is None


def subprocess_pid_that_exited() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# ---------------------------------------------------------------- the send run


def delivery(config_path, clock=T0, **kwargs) -> Delivery:
    config = load_config(config_path)
    return Delivery(config, Store(config.database_url()), clock=lambda: clock, **kwargs)


EMAILS = ["a@example.org", "b@example.org", "c@example.org"]


def test_a_run_sends_records_and_counts(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS, defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        outcomes = run.run()
        assert [(o.subscriber, o.status, o.papers) for o in outcomes] == [(e, "sent", 5) for e in EMAILS]
        assert all(o.detail.startswith("Paper digest · Nov 23 · 5 new") for o in outcomes)
        entries = run.ledger.entries()
        assert [(e.subscriber, e.state, e.period, len(e.papers)) for e in entries] == \
            [(e, "sent", "2026-11-23T07:30+00:00", 5) for e in EMAILS]
        ids = {str(m["To"]): m["Message-ID"] for m in server.handler.received}
        assert ids == {e.subscriber: e.message_id for e in entries}
        again = delivery(config).run()  # a manual run again: already sent
        assert [(o.status, o.detail) for o in again] == [("skipped", "digest for 2026-11-23T07:30+00:00 already sent")] * 3
        assert delivery(config).run(scheduled=True) == []  # the scheduler says nothing at all
        assert len(server.handler.received) == 3


def test_scheduled_runs_send_only_what_is_due(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], defaults="  schedule: daily 10:00\n")
        # 09:00: today's 10:00 is not yet; yesterday's is 23 h old, past the 12 h grace
        assert delivery(config, T0).run(scheduled=True) == []
        assert not server.handler.received
        assert [o.status for o in delivery(config, T0 + timedelta(hours=1)).run(scheduled=True)] == ["sent"]


def test_empty_digests_are_recorded_not_sent_unless_asked(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], keywords="[no-such-term-xyz]",
                       defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        assert [(o.status, o.detail) for o in run.run()] == [("empty", "nothing new matched")]
        assert [e.state for e in run.ledger.entries()] == ["empty"] and not server.handler.received
        config.write_text(config.read_text().replace("defaults:\n", "defaults:\n  send_empty: true\n"))
        later = delivery(config, T0 + timedelta(days=1))
        assert [o.status for o in later.run()] == ["sent"] and len(server.handler.received) == 1


def test_dry_run_and_to_record_nothing(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2], defaults="  schedule: daily 07:30\n")
        dry = delivery(config).run(dry_run=True)
        assert [o.status for o in dry] == ["dry-run"] * 2 and "bytes of HTML" in dry[0].detail
        test = delivery(config).run(["b@example.org"], to="me@example.org")
        assert [(o.subscriber, o.status) for o in test] == [("b@example.org", "test")]
        assert [str(m["To"]) for m in server.handler.received] == ["me@example.org"]
        assert delivery(config).ledger.entries() == []


def test_transient_failures_retry_in_the_run_then_wait_for_the_next(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["a@example.org"] = ["451 try later"]  # once
        server.handler.script["b@example.org"] = ["451 busy"] * 9  # every attempt of this run
        config = setup(tmp_path, fetched, server.port, EMAILS, smtp_extra="  retries: 2\n",
                       defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        outcomes = {o.subscriber: o for o in run.run()}
        assert outcomes["a@example.org"].status == "sent" and outcomes["c@example.org"].status == "sent"
        assert outcomes["b@example.org"].status == "deferred" and "451 busy" in outcomes["b@example.org"].detail
        b = run.ledger.entry("b@example.org", "2026-11-23T07:30+00:00")
        assert b.state == "pending" and b.attempts == 1 and "451" in b.last_error
        assert 9 - len(server.handler.script["b@example.org"]) == 3  # tried once + 2 retries
        server.handler.script["b@example.org"] = []
        assert {o.subscriber: o.status for o in delivery(config).run()} == {
            "a@example.org": "skipped", "b@example.org": "sent", "c@example.org": "skipped"}
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(EMAILS)


@pytest.mark.undated
def test_a_bad_recipient_never_stops_the_batch_and_repeated_ones_suspend(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["b@example.org"] = ["550 no such user"] * 9
        config = setup(tmp_path, fetched, server.port, EMAILS, smtp_extra="  suspend_after: 2\n",
                       defaults="  schedule: daily 07:30\n  lookback: 7d\n")
        first = {o.subscriber: o for o in delivery(config).run()}
        assert first["b@example.org"].status == "failed" and "550 no such user" in first["b@example.org"].detail
        assert "suspended" not in first["b@example.org"].detail
        assert [first[e].status for e in ("a@example.org", "c@example.org")] == ["sent", "sent"]
        second = {o.subscriber: o for o in delivery(config, T0 + timedelta(days=1)).run()}
        assert second["b@example.org"].detail.endswith("; subscriber suspended")
        third = {o.subscriber: o for o in delivery(config, T0 + timedelta(days=2)).run()}
        assert third["b@example.org"].status == "suspended" and "550 no such user" in third["b@example.org"].detail
        assert 9 - len(server.handler.script["b@example.org"]) == 2  # no third attempt


@pytest.mark.parametrize("paused", ["a@example.org", "c@example.org"])  # first or last: the others go on
def test_unsubscribed_and_paused_subscribers_get_nothing(tmp_path, fetched, paused):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS, defaults="  schedule: daily 07:30\n")
        config.write_text(config.read_text().replace(f"  - email: {paused}\n", f"  - email: {paused}\n    enabled: false\n"))
        run = delivery(config)
        run.ledger.unsubscribe("b@example.org", T0)
        outcomes = {o.subscriber: (o.status, o.detail) for o in run.run()}
        other = ({"a@example.org", "c@example.org"} - {paused}).pop()
        assert outcomes.keys() == {other, "b@example.org"}  # the paused one: not even mentioned
        assert outcomes[other][0] == "sent" and outcomes["b@example.org"] == ("skipped", "unsubscribed")
        assert [str(m["To"]) for m in server.handler.received] == [other]


def test_a_server_that_keeps_dropping_ends_the_pass(tmp_path, fetched):
    emails = [f"r{n}@example.org" for n in range(8)]
    with SmtpServer() as server:
        for e in emails:
            server.handler.script[e] = ["drop"] * 5
        config = setup(tmp_path, fetched, server.port, emails, smtp_extra="  retries: 0\n",
                       defaults="  schedule: daily 07:30\n")
        outcomes = delivery(config).run()
        assert Counter(o.status for o in outcomes) == Counter({"uncertain": 3, "deferred": 5})
        tried = sum(5 - len(server.handler.script[e]) for e in emails)
        assert tried == 3  # three dropped connections in a row end the pass
        assert all("keeps failing" in o.detail for o in outcomes if o.status == "deferred")


def test_an_unreachable_server_stops_the_run_and_loses_nothing(tmp_path, fetched):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        config = setup(tmp_path, fetched, closed.getsockname()[1], EMAILS, defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        told = []
        with pytest.raises(SmtpConfigError, match="cannot reach SMTP server"):
            run.run(progress=told.append)
    entries = run.ledger.entries()
    assert len(entries) == 3 and all(e.state == "pending" for e in entries)
    # Each of them said, once, above the error (the CLI prints what the run told before it)
    assert sorted((o.subscriber, o.status, o.detail) for o in told) == [
        (e, "deferred", "not sent: the run stopped on the error below (left for the next run)") for e in EMAILS]
    # as `digest status` says it later, with no error below it: the error itself
    kept = [e.last_error for e in entries if e.last_error]
    assert kept and all("cannot reach SMTP server" in error for error in kept), kept


def stopped_mid_send(tmp_path, fetched, emails: list[str], extra: str = ""):  # noqa: ANN001, ANN201
    """A run of `emails` stopped (as by Ctrl-C) while its second message is in flight: the
    run, with its outcomes, and what the server received."""
    with SmtpServer() as server:
        server.handler.hold_after = 1
        config = setup(tmp_path, fetched, server.port, emails, defaults="  schedule: daily 07:30\n", extra=extra)
        stop = threading.Event()
        run = delivery(config, stop=stop)
        worker = threading.Thread(target=lambda: setattr(run, "outcomes", run.run()))
        worker.start()
        assert server.handler.holding.wait(timeout=30)  # one sent, the second in flight
        stop.set()
        server.handler.release.set()
        worker.join(timeout=60)
        return run, list(server.handler.received)


def test_a_stopped_run_finishes_the_message_in_flight_only(tmp_path, fetched):
    run, received = stopped_mid_send(tmp_path, fetched, [f"r{n}@example.org" for n in range(6)])
    statuses = Counter(o.status for o in run.outcomes)
    assert statuses == Counter({"sent": 2, "deferred": 4}) and len(received) == 2
    assert all("stopped" in o.detail for o in run.outcomes if o.status == "deferred")
    states = Counter(e.state for e in run.ledger.entries())
    assert states == Counter({"sent": 2, "pending": 4})  # the rest wait for the next run


def test_a_stopped_run_says_every_digest_it_did_not_come_to(tmp_path, fetched):
    """Claimed a batch at a time: those planned but never claimed are said too, not left out."""
    emails = [f"r{n}@example.org" for n in range(6)]
    run, _ = stopped_mid_send(tmp_path, fetched, emails, extra="workers:\n  batch: 2\n")
    said = Counter((o.status, o.detail) for o in run.outcomes)
    assert said == Counter({("sent", run.outcomes[0].detail): 2,
                            ("deferred", "not sent: the run was stopped before its turn (left for the next run)"): 4})
    assert sorted(o.subscriber for o in run.outcomes) == emails  # each one once
    assert Counter(e.state for e in run.ledger.entries()) == Counter({"sent": 2, "pending": 4})


def test_a_dry_run_changes_nothing_not_even_recovery(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        entry, _ = run.ledger.record("a@example.org", "2026-11-23T07:30+00:00", "<m>", ["x"], T0)
        run.ledger.claim(entry.id, T0, f"{socket.gethostname()}:{subprocess_pid_that_exited()}:{namespace()}.1.r")
        before = run.ledger.entries()
        assert [o.status for o in delivery(config).run(dry_run=True)] == ["dry-run"]
        assert delivery(config).ledger.entries() == before and not server.handler.received


def test_a_dry_run_shows_what_a_send_would_do_now(tmp_path, fetched):
    """The same people skipped (already sent, unsubscribed), the planned still to send, the
    same papers new to each; nothing sent, nothing recorded."""
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS, defaults="  schedule: daily 07:30\n")
        first = delivery(config)
        first.ledger.record("a@example.org", "2026-11-23T07:30+00:00", "<m>", ["x"], T0)
        first.ledger.sent(first.ledger.entries("a@example.org")[0], T0)
        first.ledger.unsubscribe("b@example.org", T0)
        before = first.ledger.entries()
        said = {o.subscriber: (o.status, o.detail) for o in delivery(config).run(dry_run=True)}
        assert said["a@example.org"] == ("skipped", "digest for 2026-11-23T07:30+00:00 already sent")
        assert said["b@example.org"] == ("skipped", "unsubscribed")
        assert said["c@example.org"][0] == "dry-run"
        assert delivery(config).ledger.entries() == before and not server.handler.received
        planned = delivery(config)
        planned.plan(planned.select(["c@example.org"]), T0, scheduled=False)  # planned, not sent yet
        again = {o.subscriber: o.status for o in delivery(config).run(dry_run=True)}
        assert again == {"a@example.org": "skipped", "b@example.org": "skipped", "c@example.org": "dry-run"}
        assert not server.handler.received


def test_workers_that_start_late_still_send_the_plan_within_the_grace_period(tmp_path, fetched):
    """A plan no worker claimed within ten minutes was left pending for ever: the scheduler
    had moved on, and workers only took plans made in the last ten minutes."""
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS, defaults="  schedule: daily 07:30\n")
        assert delivery(config, clock=T0).run(scheduled=False, work=False) == []  # planned, nobody sends
        assert Counter(e.state for e in delivery(config).ledger.entries()) == Counter({"pending": 3})
        late = delivery(config, clock=T0 + timedelta(minutes=45)).run(scheduled=True, plan=False)
        assert Counter(o.status for o in late) == Counter({"sent": 3})
        assert sorted(str(m["To"]) for m in server.handler.received) == EMAILS
        stale = delivery(config, clock=T0 + timedelta(hours=13))  # past the grace: not sent so late
        assert stale.claim_window() == timedelta(hours=12)


def test_the_scheduler_sends_an_uncertain_digest_once_more(tmp_path, fetched):
    """"Sent once more on the next run": a scheduled run only looked at the subscribers due,
    so only a manual send in the same slot ever did it."""
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2], defaults="  schedule: daily 07:30\n")
        run = delivery(config)
        assert Counter(o.status for o in run.run(scheduled=True)) == Counter({"sent": 2})  # next due: tomorrow
        entry = next(e for e in run.ledger.entries() if e.subscriber == "a@example.org")
        run.ledger.uncertain(entry.id, "no reply after the end of the message", T0)
        later = delivery(config, clock=T0 + timedelta(minutes=5)).run(scheduled=True)
        assert [(o.subscriber, o.status) for o in later] == [("a@example.org", "sent")], later
        assert "sent again" in later[0].detail
        resent = [m for m in server.handler.received if str(m["To"]) == "a@example.org"]
        assert len(resent) == 2 and resent[0]["Message-ID"] == resent[1]["Message-ID"] == entry.message_id
        assert delivery(config, clock=T0 + timedelta(minutes=6)).run(scheduled=True) == []  # once, not again


def test_selecting_subscribers(tmp_path, fetched):
    from digest.errors import UnknownSubscriber

    config = setup(tmp_path, fetched, 25, EMAILS, defaults="  schedule: daily 07:30\n")
    run = delivery(config)
    assert [s.email for s in run.select()] == EMAILS
    assert [s.email for s in run.select(["C@Example.org ", "a@example.org"])] == ["a@example.org", "c@example.org"]
    with pytest.raises(UnknownSubscriber, match="no subscriber 'nobody@example.org'"):
        run.select(["a@example.org", "nobody@example.org"])


@pytest.mark.undated
def test_two_runs_in_one_process_divide_the_work_and_never_send_the_same_digest(tmp_path, fetched):
    emails = [f"r{n}@example.org" for n in range(6)]
    with SmtpServer() as server:
        server.handler.hold_after = 1  # the first run's second message is held
        config = setup(tmp_path, fetched, server.port, emails, defaults="  schedule: daily 07:30\n",
                       extra="workers:\n  batch: 1\n")
        first = delivery(config)
        results = {}
        worker = threading.Thread(target=lambda: results.setdefault("first", first.run()))
        worker.start()
        assert server.handler.holding.wait(timeout=30)
        # meanwhile a second run in the same process: it takes what is left, never the first
        # run's claims, and then waits for the first to finish its own
        server.handler.hold_after = None
        helper = threading.Thread(target=lambda: results.setdefault("second", delivery(config).run()))
        helper.start()
        deadline = time.monotonic() + 30
        while len(server.handler.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.handler.received) == 5  # 1 by the first run, 4 by the second, 1 held
        assert helper.is_alive()  # the plan is not done while the first run holds a digest
        server.handler.release.set()
        worker.join(timeout=60)
        helper.join(timeout=60)
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)
        sent = Counter(o.subscriber for o in results["first"] + results["second"] if o.status == "sent")
        assert sorted(sent) == emails and set(sent.values()) == {1}
        assert len([o for o in results["first"] if o.status == "sent"]) == 2
        assert len([o for o in results["second"] if o.status == "sent"]) == 4


def test_each_outcome_is_logged(tmp_path, fetched, caplog):
    with SmtpServer() as server:
        server.handler.script["b@example.org"] = ["550 no such user"]
        config = setup(tmp_path, fetched, server.port, EMAILS[:2], defaults="  schedule: daily 07:30\n")
        with caplog.at_level("INFO", logger="digest.deliver.send_run"):
            delivery(config).run()
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.deliver.send_run"]
    assert any(line.startswith("a@example.org: sent Paper digest · Nov 23 · 5 new") for line in lines), lines
    assert any(line.startswith("b@example.org: failed RCPT TO b@example.org: 550 no such user") for line in lines), lines


# ---------------------------------------------------------------- no reply after the end of a message


@pytest.mark.undated
def test_a_slow_accepting_server_gets_each_digest_once(tmp_path, fetched):
    with SmtpServer() as server:
        for e in EMAILS:
            server.handler.script[e] = ["stall 3"]  # the 250 comes 3 s after the end of DATA; smtp.timeout is 2
        config = setup(tmp_path, fetched, server.port, EMAILS, defaults="  schedule: daily 07:30\n")
        outcomes = delivery(config).run()
        assert [o.status for o in outcomes] == ["sent"] * 3  # RFC 5321: the reply may take minutes
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(EMAILS)
        assert [o.status for o in delivery(config).run()] == ["skipped"] * 3


def test_uncertain_digests_are_sent_once_more_at_most(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["a@example.org"] = ["drop", "drop"]  # no reply, twice
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], defaults="  schedule: daily 07:30\n")
        first = delivery(config).run()
        assert [o.status for o in first] == ["uncertain"] and first[0].detail.endswith("sent once more on the next run")
        entry = delivery(config).ledger.entries()[0]
        assert entry.state == "uncertain" and entry.uncertain_resends == 0
        assert delivery(config).ledger.delivered("a@example.org") == set(entry.papers)  # not offered again
        second = delivery(config).run()  # once more, the same digest, the same Message-ID
        assert [o.status for o in second] == ["uncertain"] and second[0].detail.endswith("not sent again (it was "
                                                                                          "already sent once more)")
        third = delivery(config).run()
        assert [(o.status, o.detail) for o in third] == [("skipped", "digest for 2026-11-23T07:30+00:00 already uncertain")]
        assert delivery(config).ledger.entries()[0].uncertain_resends == 1


def test_an_uncertain_digest_sent_again_is_the_same_message(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["a@example.org"] = ["drop"]
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], defaults="  schedule: daily 07:30\n")
        delivery(config).run()
        ids = delivery(config).ledger.entries()[0].papers
        later = delivery(config, T0 + timedelta(hours=2)).run()
        assert [o.status for o in later] == ["sent"] and "sent again" in later[0].detail
        message = server.handler.received[0]
        assert message["Message-ID"] == delivery(config).ledger.entries()[0].message_id
        text = message.get_body(("plain",)).get_content()
        titles = {p.id: p.title for p in delivery(config).store.papers(ids=list(ids))}
        assert all(" ".join(titles[i].split()[:4]) in " ".join(text.split()) for i in ids)


def test_never_resend_uncertain_when_asked(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["a@example.org"] = ["drop"]
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], smtp_extra="  resend_uncertain: never\n",
                       defaults="  schedule: daily 07:30\n")
        assert delivery(config).run()[0].detail.endswith("not sent again (smtp.resend_uncertain: never)")
        assert [o.status for o in delivery(config).run()] == ["skipped"] and not server.handler.received


def test_resume_clears_everything_and_entries_exist(ledger):
    assert not ledger.entries_exist()
    for period in ("p1", "p2"):
        entry, _ = ledger.record("a@example.org", period, "<m>", ["x"], T0)
        ledger.failed(entry, "550", T0, suspend_after=2)
    assert ledger.entries_exist()
    ledger.unsubscribe("a@example.org", T0)
    ledger.resume("a@example.org")
    state = ledger.state("a@example.org")
    assert state == type(state)()  # no failures, no suspension and its reason, no unsubscription


@pytest.mark.no_postgresql
def test_summary_counts_outcomes():
    from digest.deliver import Outcome, summary

    outcomes = [Outcome("a", "sent"), Outcome("b", "sent"), Outcome("c", "failed"), Outcome("d", "uncertain")]
    assert summary(outcomes) == {"sent": 2, "failed": 1, "uncertain": 1}
    assert summary([]) == {}
