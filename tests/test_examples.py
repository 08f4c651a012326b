"""Topics' examples trained into their topic's model when they change and never otherwise (their
papers from the store or a loopback arXiv API: an unknown id, no network), ranking papers like
them higher and never shown as papers of a digest; through the commands, the daemon and the
manage page."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.config import ArxivApiSource, Config, Subscriber, Topic, load_config, parse_config
from digest.gather import arxiv_api
from digest.gather.http import Fetcher
from digest.match.learned import Learned
from digest.match.newly_seen import newly_seen
from digest.models import Listing, Paper
from digest.store import Store
from digest.store.examples import Examples
from digest.store.ratings import Ratings, topic_models
from digest.subscribe.examples import Asking, refresh, refresh_everyone

from .arxiv_api import ArxivApi, closed_port
from .conftest import REALWORLD, fresh_database
from .smtp_server import SmtpServer
from .test_centre import Clock, Site, serve_centre, subscribed
from .test_cli import digest

# Statistical testing among the capture's 100 "testing" papers (most are about software testing).
EXAMPLES = ["2403.16981", "1306.4664", "2106.13414", "1609.07528"]  # given by id, never stored as papers
STATISTICS = {"2004.03322", "2406.19956", "2008.01944", "2409.05654", "1704.08347", "2007.09895", "2104.12832",
              "2507.16734", "2405.11454", "1009.3186", "1106.3680", "2304.14166", "1706.08286", "2509.24242"}
NOW = datetime.now(UTC)


def captured_papers(now: datetime = NOW, leave_out: tuple[str, ...] = tuple(EXAMPLES)) -> list[Paper]:
    body = (REALWORLD / "arxiv-api-query-testing-100.xml").read_bytes()
    listing = arxiv_api.parse(ArxivApiSource(name="api", type="arxiv-api", url="x"), body, now)
    return [p for p in listing.papers if p.id not in leave_out]


def store_with_papers(tmp_path: Path, papers: list[Paper] | None = None) -> Store:
    store = Store(fresh_database(tmp_path))
    store.save_listing("api", Listing(tuple(captured_papers() if papers is None else papers)), NOW - timedelta(hours=1))
    return store


def quick(url: str) -> Asking:
    """arXiv asked without the 3 s between requests, and retried without waiting."""
    return Asking(url, Fetcher(backoff=0.01), interval=0)


def model_of(store: Store, email: str, topic: str) -> Learned | None:
    found = Ratings(store).models([email]).get(email, {}).get(topic)
    return Learned.from_json(found) if found else None


# ---------------------------------------------------------------- trained when they change, and only then


@pytest.mark.database
def test_arxiv_unreachable_trains_with_what_the_store_has_and_asks_again_next_time(tmp_path, caplog):
    # One example the store has (gathered like any paper), one it must ask arXiv for.
    store = store_with_papers(tmp_path, captured_papers(leave_out=(EXAMPLES[1],)))
    reader = Subscriber(email="a@example.org", topics=[Topic(name="Testing", keywords=["testing"],
                                                             examples=EXAMPLES[:2])])
    with caplog.at_level(logging.WARNING, logger="digest.subscribe"):
        done = refresh(store, [reader], NOW, quick(f"http://127.0.0.1:{closed_port()}/api/query"))
    assert done.retrained == 1 and done.waiting == 1 and "cannot reach" in (done.unreachable or "")
    assert "asked for next time" in caplog.text
    model = model_of(store, "a@example.org", "Testing")
    assert model is not None and len(model.examples) == 1  # trained with what the store had
    with ArxivApi() as api:
        done = refresh(store, [reader], NOW, quick(api.url))
        assert api.asked == [[EXAMPLES[1]]]  # only what the store lacks
    assert done.retrained == 1 and done.waiting == 0 and done.unreachable is None
    model = model_of(store, "a@example.org", "Testing")
    assert model is not None and len(model.examples) == 2
    assert store.count() == 99  # the example asked for is not a paper


@pytest.mark.database
def test_an_id_arxiv_does_not_know_is_named_and_stops_nothing_else(tmp_path, caplog):
    store = store_with_papers(tmp_path)
    readers = [Subscriber(email="a@example.org", topics=[Topic(name="Stats", description="Statistical tests.",
                                                               examples=[EXAMPLES[0], "2606.99999"])]),
               Subscriber(email="b@example.org", topics=[Topic(name="Tests", keywords=["test"], examples=EXAMPLES[1:3])])]
    with ArxivApi() as api, caplog.at_level(logging.WARNING, logger="digest.subscribe"):
        done = refresh(store, readers, NOW, quick(api.url))
    assert done.unknown == [("a@example.org", "Stats", "2606.99999")] and done.waiting == 0
    assert "a@example.org, topic 'Stats': arXiv does not know the example 2606.99999" in caplog.text
    assert model_of(store, "a@example.org", "Stats") is not None and model_of(store, "b@example.org", "Tests") is not None
    # settled: asked again only when the topic's examples change
    with ArxivApi() as api:
        assert refresh(store, readers, NOW, quick(api.url)).retrained == 0 and api.asked == []


@pytest.mark.database
def test_changed_examples_retrain_unchanged_do_not(tmp_path, monkeypatch):
    from digest.subscribe import learning

    trainings: list[int] = []
    real_train = learning.train

    def counted(liked, disliked, unrated):  # type: ignore[no-untyped-def]
        trainings.append(len(liked))
        return real_train(liked, disliked, unrated)

    monkeypatch.setattr(learning, "train", counted)
    store = store_with_papers(tmp_path)
    plain = [Subscriber(email=f"p{n}@example.org", topics=[Topic(name="Tests", keywords=["test"])]) for n in range(50)]
    reader = Subscriber(email="a@example.org", topics=[
        Topic(name="Stats", description="Statistical tests.", examples=EXAMPLES[:2]),
        Topic(name="Software", keywords=["software testing"])])
    with ArxivApi() as api:
        assert refresh(store, [*plain, reader], NOW, quick(api.url)).retrained == 1 and trainings == [2]
        assert refresh(store, [*plain, reader], NOW, quick(api.url)).retrained == 0 and trainings == [2]
        assert len(api.asked) == 1
        more = reader.model_copy(update={"topics": [reader.topics[0].model_copy(update={"examples": EXAMPLES}),
                                                    reader.topics[1]]})
        assert refresh(store, [more], NOW, quick(api.url)).retrained == 1 and trainings == [2, 4]
        assert api.asked[1] == sorted(EXAMPLES[2:])  # only the new ones asked for
        fewer = reader.model_copy(update={"topics": [reader.topics[0].model_copy(update={"examples": []}),
                                                     reader.topics[1]]})
        assert refresh(store, [fewer], NOW, quick(api.url)).retrained == 1
    assert model_of(store, "a@example.org", "Stats") is None  # no examples, no ratings: no model, as before
    assert Examples(store).trained_with() == {}
    assert refresh(store, [*plain, fewer], NOW, quick("http://127.0.0.1:1/never")).retrained == 0


@pytest.mark.database
def test_a_rating_retrains_with_the_topic_examples_and_a_new_store_waits_for_papers(tmp_path):
    store = Store(fresh_database(tmp_path))  # no papers yet: nothing to set the examples against
    reader = Subscriber(email="a@example.org", topics=[Topic(name="Stats", description="Statistical tests.",
                                                             examples=EXAMPLES[:2])])
    with ArxivApi() as api:
        done = refresh(store, [reader], NOW, quick(api.url))
        assert done.waiting == 1 and model_of(store, "a@example.org", "Stats") is None
        store.save_listing("api", Listing(tuple(captured_papers())), NOW - timedelta(hours=1))
        done = refresh(store, [reader], NOW, quick(api.url))
        assert done.waiting == 0 and len(api.asked) == 1  # the examples' text was kept from the first time
    from digest.subscribe.learning import retrain

    Ratings(store).rate("a@example.org", "2008.01944", "Stats", 1, NOW)
    assert retrain(store, "a@example.org", "Stats", NOW)  # as the rating page does
    model = model_of(store, "a@example.org", "Stats")
    assert model is not None and model.ratings == 3 and len(model.examples) == 2


@pytest.mark.database
def test_everyone_unchanged_costs_a_few_queries_whatever_their_number(tmp_path):
    from digest.deliver import roster
    from digest.store.directory import Directory

    store = store_with_papers(tmp_path)
    yaml_topics = "".join(f"  - email: p{n}@example.org\n    topics: [{{name: Tests, keywords: [test]}}]\n"
                          for n in range(30))
    with ArxivApi() as api:
        config = parse_config(f"sender: {{from: digest@example.org}}\nstate: {store.url}\narxiv_api: {api.url}\n"
                              "subscribers:\n" + yaml_topics + "  - email: a@example.org\n    topics:\n"
                              "      - {name: Stats, description: Statistical tests., examples: ['2403.16981']}\n",
                              tmp_path / "subscribers.yaml")
        assert refresh_everyone(config, store, NOW, quick(api.url)).retrained == 1
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        assert refresh_everyone(config, store, NOW, quick(api.url)).retrained == 0 and len(api.asked) == 1
        # the directory synced (its fingerprint), the records, the rows with examples: not one per subscriber
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 3, statements
        # the reader takes their examples away on the manage page: their row no longer has any
        directory = Directory(store)
        mine = Subscriber(email="a@example.org", topics=[Topic(name="Stats", description="Statistical tests.",
                                                               keywords=["test"])])
        directory.claim("self", roster.as_wanted(config, mine), NOW, lambda schedule, timezone: None)
        assert refresh_everyone(config, store, NOW, quick(api.url)).retrained == 1
    assert Examples(store).trained_with() == {}


# ---------------------------------------------------------------- in the digest


@pytest.mark.database
def test_examples_rank_papers_like_them_higher_and_never_appear_in_a_digest(tmp_path):
    """Through `digest fetch` and `digest preview --format json`, as a user runs them: two readers
    with the same topic, one of them with examples of statistical testing."""
    capture = (REALWORLD / "arxiv-api-query-testing-100.xml").read_text(encoding="utf-8")
    source = tmp_path / "testing-96.xml"  # the real capture without the examples' entries
    ids = "|".join(re.escape(i) for i in EXAMPLES)
    source.write_text(re.sub(rf"  <entry>\s*<id>http://arxiv\.org/abs/({ids})v\d+</id>.*?</entry>\n", "", capture,
                             flags=re.S), encoding="utf-8")
    topic = "      - name: Testing\n        description: Testing.\n        keywords: [testing]\n"
    state = fresh_database(tmp_path)
    with ArxivApi() as api:
        config = tmp_path / "subscribers.yaml"
        given = "        examples: ['arXiv:2403.16981v1', 'https://arxiv.org/abs/1306.4664', '2106.13414', '1609.07528']\n"
        config.write_text(
            f'sender: {{from: "Paper Digest <digest@example.org>"}}\nstate: {state}\n'
            f"arxiv_api: {api.url}\nsources:\n  - {{name: api, type: arxiv-api, query: 'all:testing', url: '{source}'}}\n"
            "subscribers:\n"
            f"  - email: with@example.org\n    max_papers: 100\n    topics:\n{topic}{given}"
            f"  - email: without@example.org\n    max_papers: 100\n    topics:\n{topic}", encoding="utf-8")
        assert digest("-c", str(config), "fetch").returncode == 0

        def shown(email: str) -> list[dict]:
            run = digest("-c", str(config), "preview", email, "--format", "json")
            assert run.returncode == 0, run.stderr
            papers = [p for s in json.loads(run.stdout)["sections"] for p in s["papers"]]
            return sorted(papers, key=lambda p: -p["score"])

        with_examples, without = shown("with@example.org"), shown("without@example.org")
        assert api.asked == [sorted(EXAMPLES)]  # asked once, for the preview of the reader who gave them
        def trained_at() -> list:
            store = Store(state)
            try:
                return store.read(lambda conn: conn.execute(sa.select(topic_models.c.trained_at)).all())
            finally:
                store.close()

        before = trained_at()
        again = shown("with@example.org")  # unchanged: nothing asked, nothing trained
        assert len(api.asked) == 1 and trained_at() == before and len(before) == 1
        assert {(p["id"], p["why"]) for p in again} == {(p["id"], p["why"]) for p in with_examples}
        ranks = [[n for n, p in enumerate(papers) if p["id"] in STATISTICS] for papers in (with_examples, without)]
        assert all(mine <= theirs for mine, theirs in zip(*ranks))  # the k-th statistics paper ranks higher or the same
        assert sum(ranks[0][:5]) < 0.75 * sum(ranks[1][:5])  # the first few much higher
        assert any(p["why"].startswith('like your example "') for p in with_examples[:10])
        assert not {p["id"] for p in with_examples} & set(EXAMPLES)
        listed = json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)
        assert len(listed) == 96 and not {p["id"] for p in listed} & set(EXAMPLES)  # never stored as papers

        config.write_text(config.read_text(encoding="utf-8").replace("'1609.07528'", "'1609.07528', '2606.99999'"),
                          encoding="utf-8")
        run = digest("-c", str(config), "preview", "with@example.org", "--format", "json")
        assert run.returncode == 0 and json.loads(run.stdout)["sections"]
        assert "with@example.org, topic 'Testing': arXiv does not know the example 2606.99999" in run.stderr
        assert api.asked[-1] == ["2606.99999"]


@pytest.mark.database
def test_an_example_the_store_has_is_never_in_the_reader_digest(tmp_path):
    """An example gathered as a new paper of the day: the reader has it already, so it is left
    out of their digest (and nobody else's)."""
    store = store_with_papers(tmp_path, captured_papers(leave_out=()))
    config = Config.model_validate({"sender": {"from": "digest@example.org"}})
    topic = {"name": "Testing", "description": "Testing.", "keywords": ["testing"]}
    reader = Subscriber(email="a@example.org", max_papers=100, topics=[{**topic, "examples": EXAMPLES}])
    other = Subscriber(email="b@example.org", max_papers=100, topics=[topic])
    assert refresh(store, [reader], NOW, quick("http://127.0.0.1:1/never")).waiting == 0  # all in the store
    _, digests = newly_seen(config, store, [reader, other], NOW, ledger=None)
    mine, theirs = ({p.id for p in d.papers} for d in digests)
    assert not mine & set(EXAMPLES) and mine & theirs and set(EXAMPLES) & theirs  # what else they share stays


# ---------------------------------------------------------------- the daemon


@pytest.mark.database
def test_the_daemon_trains_examples_at_start_and_again_after_a_fetch_while_some_wait(tmp_path):
    from digest.daemon import Daemon

    store = store_with_papers(tmp_path)
    port = closed_port()
    path = tmp_path / "subscribers.yaml"
    path.write_text(f"sender: {{from: digest@example.org}}\nstate: {store.url}\n"
                    f"arxiv_api: http://127.0.0.1:{port}/api/query\nsubscribers:\n  - email: a@example.org\n"
                    "    topics:\n      - {name: Stats, description: Statistical tests., examples: ['2403.16981']}\n",
                    encoding="utf-8")
    daemon = Daemon(str(path))
    daemon.learn_examples()  # arXiv unreachable: waiting for next time
    assert daemon.examples_waiting and model_of(store, "a@example.org", "Stats") is None
    with ArxivApi() as api:
        path.write_text(path.read_text(encoding="utf-8").replace(f"http://127.0.0.1:{port}/api/query", api.url),
                        encoding="utf-8")
        daemon.config = load_config(path, subscribers=False)
        daemon.fetch()  # no sources: then the examples waiting
        assert api.asked == [["2403.16981"]]
    assert not daemon.examples_waiting and model_of(store, "a@example.org", "Stats") is not None


# ---------------------------------------------------------------- the manage page


@pytest.fixture
def site_with_arxiv(tmp_path):
    with SmtpServer() as smtp, ArxivApi() as api:
        clock = Clock()
        server, centre, store, _ = serve_centre(tmp_path, smtp, "  per_client: 30\n", clock=clock,
                                                extra=f"arxiv_api: {api.url}\n")
        # two of the examples among the day's papers, two to be asked for
        papers = captured_papers(clock.now, leave_out=tuple(EXAMPLES[2:]))
        store.save_listing("api", Listing(tuple(papers)), clock.now - timedelta(hours=1))
        try:
            yield Site(server, smtp, centre, store, centre.secret, clock), api
        finally:
            server.shutdown()


@pytest.mark.database
def test_the_manage_page_saves_examples_trains_the_topic_and_its_preview_follows(site_with_arxiv):
    site, api = site_with_arxiv
    visitor, manage = subscribed(site)
    settings = {"action": "save", "topic_name_1": "Testing", "topic_description_1": "Testing.",
                "schedule_kind": "daily", "schedule_time": "07:30", "timezone": "UTC", "max_papers": "50"}
    status, html = visitor.post(manage, {**visitor.form(manage), **settings, "topic_examples_1": "2403.16981\nnot-an-id"})
    assert status == 400 and 'id="topic_examples_1-error"' in html and "example 2 (&#39;not-an-id&#39;)" in html
    assert api.asked == []
    given = "arXiv:2403.16981v2\nhttps://arxiv.org/abs/1306.4664, 2106.13414 1609.07528\n2606.99999"
    status, _ = visitor.post(manage, {**visitor.form(manage), **settings, "topic_examples_1": given})
    assert status == 303 and api.asked == [sorted([*EXAMPLES[2:], "2606.99999"])]
    model = model_of(site.store, "me@example.org", "Testing")
    assert model is not None and len(model.examples) == 4
    status, html = visitor.get(manage + "?done=saved")
    assert status == 200 and ">2403.16981\n1306.4664\n2106.13414\n1609.07528\n2606.99999</textarea>" in html
    assert "arXiv does not know 2606.99999" in html
    preview = html.split('<div id="preview"', 1)[1].split("Pause or stop", 1)[0]
    assert "like your example" in preview
    assert preview.count('href="https://arxiv.org/abs/') > 20
    assert "abs/2403.16981" not in preview and "abs/1306.4664" not in preview  # the day's papers, but examples
    # saved again unchanged (a pause, say): nothing asked, nothing retrained
    assert visitor.post(manage, {**visitor.form(manage), **settings, "topic_examples_1": given})[0] == 303
    assert len(api.asked) == 1
    exported = json.loads(visitor.get(manage + "/export")[1])
    [topic] = [t for t in exported["settings"]["topics"] if t["name"] == "Testing"]
    assert topic["examples"] == [*EXAMPLES, "2606.99999"]
    assert visitor.post(manage + "/delete", visitor.form(manage + "/delete"))[0] == 200
    assert Examples(site.store).trained_with() == {} and model_of(site.store, "me@example.org", "Testing") is None


@pytest.mark.database
def test_saves_at_once_never_queue_on_arxiv_one_asks_the_others_say_later(site_with_arxiv):
    """Each save that asked arXiv held one of the server's threads while arXiv's pacing queued
    them: 45 at once stalled every page for minutes. One asks; the others save at once."""
    site, api = site_with_arxiv
    api.delay = 3.0
    first, first_page = subscribed(site, "first@example.org")
    second, second_page = subscribed(site, "second@example.org")
    settings = {"action": "save", "topic_name_1": "Testing", "topic_description_1": "Testing.",
                "schedule_kind": "daily", "schedule_time": "07:30", "timezone": "UTC", "max_papers": "50"}
    asking = threading.Thread(target=lambda: first.post(first_page, {**first.form(first_page), **settings,
                                                                    "topic_examples_1": EXAMPLES[2]}))
    asking.start()
    deadline = time.monotonic() + 10
    while not api.asked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.asked == [[EXAMPLES[2]]]  # the first save waits on arXiv
    started = time.monotonic()
    status, _ = second.post(second_page, {**second.form(second_page), **settings, "topic_examples_1": EXAMPLES[3]})
    assert status == 303 and time.monotonic() - started < 2  # saved at once, arXiv not asked again
    html = second.get(second_page + "?done=saved")[1]
    assert f"Not fetched from arXiv yet: {EXAMPLES[3]}" in html
    asking.join(timeout=30)
    assert api.asked == [[EXAMPLES[2]]]
