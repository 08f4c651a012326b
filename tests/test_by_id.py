"""Asking arXiv's API for papers by id (`id_list`): a real answer read, the ids it leaves out
unknown, a 503 retried, requests kept apart, no network; and where the answers are kept
(migration 10, on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from digest.gather.by_id import papers_by_id
from digest.gather.http import Fetcher
from digest.models import Paper
from digest.store import Store
from digest.store.examples import Examples, topic_examples
from digest.store.ratings import Ratings

from .arxiv_api import ArxivApi, captured_entries, closed_port
from .conftest import DATA, Reply, fresh_database

NOW = datetime.now(UTC)
EXAMPLES = ["2403.16981", "1306.4664", "2106.13414", "1609.07528"]


def test_a_real_answer_by_id_is_read_and_the_ids_it_leaves_out_are_unknown(feed_server):
    url = feed_server.serve("/api/query", Reply(200, (DATA / "arxiv-api-id-list.xml").read_bytes()))
    answer = papers_by_id(["2606.13591", "2606.99999", "2606.13501"], url=url, fetcher=Fetcher(), now=NOW, interval=0)
    assert answer.error is None and answer.unknown == {"2606.99999"}
    papers = {p.id: p for p in answer.papers}
    assert set(papers) == {"2606.13591", "2606.13501"}
    assert papers["2606.13501"].title == "GF-DiT: Scheduling Parallelism for Diffusion Transformer Serving"
    assert papers["2606.13591"].title == "Multiagent Protocols with Aggregated Confidence Signals"
    assert papers["2606.13591"].abstract.startswith("Confidence is used for reliability")
    assert papers["2606.13501"].categories[0] == "cs.DC" and papers["2606.13501"].authors
    [(path, _, _)] = feed_server.requests
    assert "id_list=2606.13591%2C2606.99999%2C2606.13501" in path and "max_results=3" in path


def test_a_503_is_retried_and_requests_keep_their_distance():
    many = sorted(captured_entries())  # 105: two requests of BATCH (100) ids
    with ArxivApi() as api:
        api.failures = [503]
        answer = papers_by_id(many, url=api.url, fetcher=Fetcher(backoff=0.01), now=NOW, interval=0.3)
    assert answer.error is None and not answer.unknown and {p.id for p in answer.papers} == set(many)
    assert [len(ids) for ids in api.asked] == [100, 100, 5]  # the first request again after the 503
    assert all(later - earlier >= 0.29 for earlier, later in zip(api.times, api.times[1:]))


def test_without_the_network_nothing_is_lost_but_time():
    answer = papers_by_id(EXAMPLES, url=f"http://127.0.0.1:{closed_port()}/api/query", fetcher=Fetcher(retries=0),
                          now=NOW, interval=0)
    assert not answer.papers and not answer.unknown and answer.missed == tuple(EXAMPLES)
    assert "cannot reach" in (answer.error or "")


@pytest.mark.database
def test_migration_10_on_a_database_at_9_and_its_upserts(tmp_path, monkeypatch):
    from digest.store import database

    url = fresh_database(tmp_path)
    monkeypatch.setattr(database, "MIGRATIONS", database.MIGRATIONS[:9])
    old = Store(url)
    Ratings(old).rate("a@example.org", "2008.01944", "Stats", 1, NOW)
    old.close()
    monkeypatch.undo()
    store = Store(url)
    with store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version, name FROM schema_migrations ORDER BY version")).all()
    assert versions[-1] == (10, "m10_topic_examples") and len(versions) == 10
    assert Ratings(store).get("a@example.org", "2008.01944") is not None  # what was there stays
    kept = Examples(store)
    paper = Paper(id="2403.16981", title="Old title", url="https://arxiv.org/abs/2403.16981", abstract="A.",
                  authors=("Ann Author",), categories=("math.ST",))
    kept.keep([paper], ["2606.99999"], NOW)
    kept.keep([Paper(id="2403.16981", title="New title", url="u", abstract="B.")], ["2606.99999"], NOW)  # again
    known = kept.known(["2403.16981", "2606.99999", "2406.00000"])
    assert known.papers["2403.16981"].title == "New title" and known.unknown == {"2606.99999"}
    kept.record("A@Example.org", "Stats", ["2606.99999", "2403.16981"], NOW)
    kept.record("a@example.org", "Stats", ["2403.16981"], NOW + timedelta(minutes=1))
    assert kept.trained_with(["a@example.org"]) == {"a@example.org": {"Stats": frozenset({"2403.16981"})}}
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(topic_examples)).scalar() == 1
    assert kept.forget("a@example.org") == 1 and kept.trained_with() == {}
