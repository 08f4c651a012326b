"""The store on both databases it supports, SQLite and PostgreSQL (a server the tests start
themselves): the same tests, one parametrised fixture. Concurrency with no check-then-insert:
processes migrating an empty database at once, sources merging into the same papers at once,
digests recorded and claimed by several workers at once."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from digest.models import Listing, Paper
from digest.store import Ledger, Store

from .conftest import postgres_server

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """A fresh, empty database's URL, as a user writes it in `state:`."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return postgres_server().create_database()  # the one server the tests share


def paper(n: int, **fields) -> Paper:
    return Paper(id=f"2611.{n:05d}", title=f"Paper {n}", url=f"https://arxiv.org/abs/2611.{n:05d}", **fields)


def _migrate(url: str, barrier) -> str:  # noqa: ANN001
    barrier.wait()
    try:
        return str(Store(url).migrate())
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"{exc.__class__.__name__}: {exc}"


def test_many_processes_migrate_an_empty_database_at_once(database):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            results = pool.starmap(_migrate, [(database, barrier)] * 4)
    assert len(set(results)) == 1 and results[0].isdigit(), results


def test_records_and_claims(database):
    ledger = Ledger(Store(database))
    first, created = ledger.record("a@example.org", "p", "<m>", ["x"], T0)
    second, _ = ledger.record("b@example.org", "p", "<m>", ["y"], T0)
    assert created and first.id != second.id  # ids numbered by the database, on both
    assert ledger.claim(first.id, T0, "w1") and not ledger.claim(first.id, T0, "w2")
    ledger.sending(first.id, T0)
    ledger.sent(first, T0)
    assert ledger.delivered("a@example.org") == {"x"}
    assert ledger.unsubscribe("b@example.org", T0) == T0
    # again: an update, not a second row, and since when stays the first time
    assert ledger.unsubscribe("b@example.org", T0 + timedelta(hours=1)) == T0
    assert ledger.state("b@example.org").unsubscribed_at == T0
    ledger.resubscribe("b@example.org")
    assert ledger.unsubscribe("b@example.org", T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)


def test_the_same_digest_recorded_by_many_workers_at_once_is_one(database):
    ledger = Ledger(Store(database))
    barrier = threading.Barrier(8)
    results = []

    def record() -> None:
        barrier.wait()
        results.append(ledger.record("a@example.org", "p", "<m>", ["x"], T0))

    threads = [threading.Thread(target=record) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({entry.id for entry, _ in results}) == 1 and sum(created for _, created in results) == 1


def test_one_signing_key_whoever_asks_first(database):
    store = Store(database)
    barrier = threading.Barrier(6)
    keys = []

    def ask() -> None:
        barrier.wait()
        keys.append(Store(database).secret())

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == store.secret()


def test_sources_merging_into_the_same_papers_at_once(database):
    store = Store(database)
    ids = range(1, 201)
    listings = {
        "arxiv": Listing(tuple(paper(n, categories=("cs.CL",)) for n in ids)),
        "hf": Listing(tuple(paper(n, upvotes=n) for n in ids)),
        "api": Listing(tuple(paper(n, abstract=f"About paper {n}.") for n in ids)),
    }
    barrier = threading.Barrier(len(listings))
    errors = []

    def save(source: str) -> None:
        barrier.wait()
        try:
            Store(database).save_listing(source, listings[source], T0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(name,)) for name in listings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = {p.id: p for p in store.papers()}
    assert len(stored) == 200
    for n in ids:  # every source's contribution, none lost to a last writer
        p = stored[f"2611.{n:05d}"]
        assert p.categories == ("cs.CL",) and p.upvotes == n and p.abstract == f"About paper {n}."
        assert set(p.sources) == {"arxiv", "hf", "api"}


def test_workers_claim_disjoint_batches_of_the_size_they_ask(database):
    from digest.store.ledger import Planned

    ledger = Ledger(Store(database))
    ledger.plan([Planned(f"r{n}@example.org", "p", "<m>", ("x",), "{}") for n in range(40)], [], [], T0)
    batches: dict[str, list[list[int]]] = {}

    def work(name: str) -> None:
        mine = Ledger(Store(database))
        while got := mine.claim_batch(name, T0, limit=3, planned_since=T0 - timedelta(minutes=1)):
            batches.setdefault(name, []).append([e.id for e in got])

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [i for runs in batches.values() for batch in runs for i in batch]
    assert all(len(batch) <= 3 for runs in batches.values() for batch in runs)  # PostgreSQL once gave all 40
    assert sorted(claimed) == sorted(e.id for e in ledger.entries())  # each exactly once
    assert {e.state for e in ledger.entries()} == {"claimed"}


def test_a_named_lease_has_one_holder_at_a_time(database):
    from digest.store.locks import Locks

    locks, lease = Locks(Store(database)), timedelta(seconds=5)
    assert locks.acquire("plan", "a", T0, lease) and not locks.acquire("plan", "b", T0, lease)
    assert locks.acquire("plan", "a", T0 + timedelta(seconds=4), lease)  # renewed by its holder
    assert not locks.acquire("plan", "b", T0 + timedelta(seconds=8), lease)  # renewed: still a's
    assert locks.acquire("plan", "b", T0 + timedelta(seconds=10), lease)  # a stopped renewing
    locks.release("plan", "a")  # not a's any more: nothing happens
    assert locks.holder("plan")[0] == "b"
    # Workers taking and releasing it as fast as they can: never two holders, never an error
    # (a release between another's insert and read once ended in NoResultFound).
    holding, most, errors = [0], [0], []
    guard = threading.Lock()

    def churn(me: str) -> None:
        mine = Locks(Store(database))
        for _ in range(60):
            try:
                if mine.acquire("fetch", me, T0, lease):
                    with guard:
                        holding[0] += 1
                        most[0] = max(most[0], holding[0])
                    with guard:
                        holding[0] -= 1
                    mine.release("fetch", me)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=churn, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and most[0] == 1


def test_a_lease_held_longer_than_its_length_is_renewed_until_released(database):
    """A plan of very many subscribers outlasts the plan lease: its holder keeps renewing it,
    so no second planner starts; once released it is free at once."""
    from digest.store.locks import Locks

    def now() -> datetime:
        return datetime.now(UTC)

    lease = timedelta(seconds=0.6)
    holder, other = Locks(Store(database)), Locks(Store(database))
    with holder.held("plan", now(), lease, clock=now) as mine:
        assert mine
        deadline = time.monotonic() + 2.0  # more than three leases
        while time.monotonic() < deadline:
            assert not other.acquire("plan", "other", now(), lease), "the lease lapsed while its holder ran"
            time.sleep(0.05)
    assert other.acquire("plan", "other", now(), lease)
