"""The store: one record per paper across sources, merges, versions, concurrency, migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest import load_config
from digest.gather import gather
from digest.models import Listing, Paper
from digest.store import Store
from digest.store.database import MIGRATIONS

from .conftest import DATABASE, REALWORLD, fresh_database, write_config

pytestmark = [pytest.mark.clock, pytest.mark.database]  # under faketime at other dates; on PostgreSQL (.ci/run)

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples"  # real titles, made-up ids


def paper(**kw) -> Paper:
    base = dict(id="2611.00001", title="A paper", url="https://arxiv.org/abs/2611.00001")
    return Paper(**{**base, **kw})


def store_at(tmp_path) -> Store:
    return Store(fresh_database(tmp_path))


def test_same_paper_from_two_sources_is_one_record_with_both_sources_data(tmp_path):
    store = store_at(tmp_path)
    arxiv = paper(categories=("cs.CL", "cs.LG"), authors=("Ada Nguyen",), version=1, sources=("arxiv",),
                  abstract="From arXiv.")
    hf = paper(upvotes=42, comments=3, ai_summary="Short.", hf_url="https://huggingface.co/papers/2611.00001",
               code_url="https://github.com/x/y", sources=("hf",), abstract="From HF.")
    first = store.save_listing("arxiv", Listing((arxiv,)), T0)
    second = store.save_listing("hf", Listing((hf,)), T0 + timedelta(hours=1))
    assert (first.new, first.merged) == (1, 0)
    assert (second.new, second.merged) == (0, 1)
    [stored] = store.papers()
    assert stored.categories == ("cs.CL", "cs.LG") and stored.upvotes == 42 and stored.comments == 3
    assert stored.ai_summary == "Short." and stored.code_url == "https://github.com/x/y"
    assert stored.sources == ("arxiv", "hf")
    assert stored.abstract == "From arXiv." and stored.first_seen_at == T0


def test_new_version_is_not_a_new_paper_and_upvotes_refresh(tmp_path):
    store = store_at(tmp_path)
    store.save_listing("hf", Listing((paper(upvotes=3, version=1),)), T0)
    again = store.save_listing("hf", Listing((paper(upvotes=57, version=2),)), T0 + timedelta(days=1))
    assert (again.new, again.merged, again.updated) == (0, 0, 1)
    [stored] = store.papers()
    assert stored.upvotes == 57 and stored.version == 2 and stored.first_seen_at == T0


def test_unchanged_refetch_writes_nothing_new(tmp_path):
    store = store_at(tmp_path)
    listing = Listing((paper(), paper(id="hep-th/9901001", url="https://arxiv.org/abs/hep-th/9901001")))
    store.save_listing("a", listing, T0)
    again = store.save_listing("a", listing, T0 + timedelta(hours=1))
    assert (again.fetched, again.new, again.merged, again.updated) == (2, 0, 0, 0)
    assert store.count() == 2


def test_papers_filters(tmp_path):
    store = store_at(tmp_path)
    store.save_listing("a", Listing((paper(id="1"),)), T0)
    store.save_listing("b", Listing((paper(id="2"),)), T0 + timedelta(days=2))
    assert [p.id for p in store.papers(since=T0 + timedelta(days=1))] == ["2"]
    assert [p.id for p in store.papers(source="a")] == ["1"]
    assert [p.id for p in store.papers()] == ["2", "1"]


def test_migrations_are_recorded_and_idempotent(tmp_path):
    url = fresh_database(tmp_path)
    Store(url)
    store = Store(url)
    with store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version, name FROM schema_migrations")).all()
    assert [v for v, _ in versions] == list(range(1, len(MIGRATIONS) + 1))


def test_samples_merge_hugging_face_into_the_arxiv_listing(tmp_path):
    path = write_config(tmp_path, [
        {"name": "listing", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
        {"name": "hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")},
    ], state=fresh_database(tmp_path))
    config = load_config(path)
    store = Store(config.database_url())
    reports = {r.source: r for r in gather(config, store, workers=1, now=T0)}
    listing, hf = reports["listing"], reports["hf"]
    assert listing.ok and hf.ok
    assert store.count() == listing.fetched + hf.fetched - (hf.merged + listing.merged)
    both = [p for p in store.papers() if set(p.sources) == {"listing", "hf"}]
    assert len(both) == hf.merged + listing.merged > 100
    assert all(p.upvotes is not None and p.categories for p in both)


CONCURRENT_FETCH = """
import sys
from digest import load_config, Store, gather
config = load_config(sys.argv[1])
reports = gather(config, Store(config.database_url()), workers=2)
assert all(r.ok for r in reports), reports
"""


@pytest.mark.undated
def test_concurrent_fetches_never_duplicate_or_corrupt(tmp_path):
    sources = [
        {"name": "hf", "type": "huggingface", "url": str(REALWORLD / "hf-daily-papers-2026-06-12.json")},
        {"name": "api", "type": "arxiv-api", "query": "x", "url": str(REALWORLD / "arxiv-api-query-testing-100.xml")},
        {"name": "listing", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
        {"name": "samples-hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")},
    ]
    path = write_config(tmp_path, sources, state=fresh_database(tmp_path))
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_FETCH, str(path)], stderr=subprocess.PIPE)
            for _ in range(3)]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read().decode()
    config = load_config(path)
    store = Store(config.database_url())
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        rows = conn.execute(sa.text("SELECT COUNT(*), COUNT(DISTINCT id) FROM papers")).one()
        links = conn.execute(sa.text("SELECT COUNT(*) FROM paper_sources")).scalar()
    assert rows[0] == rows[1] == 30 + 100 + 390 + 195 - 175
    assert links == 30 + 100 + 390 + 195


@pytest.mark.no_postgresql
def test_merge_is_order_independent_for_the_data_each_source_owns():
    arxiv = paper(categories=("cs.CL",), sources=("arxiv",))
    hf = paper(upvotes=7, sources=("hf",))
    one, other = arxiv.merged_with(hf), hf.merged_with(arxiv)
    assert replace(one, sources=()) == replace(other, sources=())


def _locks_held(path: Path) -> int:
    """POSIX locks this process holds on `path`, as the kernel lists them."""
    inode = os.stat(path).st_ino
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if line.split()[4] == str(os.getpid()) and line.split()[5].endswith(f":{inode}"))


@pytest.mark.skipif(DATABASE != "sqlite" or not Path("/proc/locks").exists(), reason="SQLite's file locks (Linux)")
def test_opening_the_store_again_keeps_this_process_locks(tmp_path):
    """A second Store in a process that is using the database (the daemon's jobs each open
    one) must not drop the first one's locks: closing any descriptor of the file drops all of
    a process's POSIX locks on it, and another process may then take this one for gone — check-
    point and delete the WAL under it — which corrupted the database ("database disk image is
    malformed") with two `digest run --role scheduler` starting at once."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store(url)
    reader = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM papers").fetchone()  # a read under way: it holds a lock
        held = _locks_held(tmp_path / "state.db")
        assert held >= 1
        Store(url)  # another job of the same process opens the store meanwhile
        assert _locks_held(tmp_path / "state.db") == held
    finally:
        reader.close()
