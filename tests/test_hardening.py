"""Attacks on a running installation (issue 10): hostile feeds, poisoned rows, and the
product still gathering, matching and sending for everyone else."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import load_config
from digest.errors import StoreError
from digest.store import Ledger, Store, open_store

from .conftest import DATABASE, REALWORLD, FeedServer, Reply, sqlite_only, write_config
from .smtp_server import SmtpServer
from .test_cli import digest
from .test_deliver import fetched_db, setup  # noqa: F401 - the fixture

pytestmark = pytest.mark.database  # on PostgreSQL too (.ci/run)

YEAR_ONE = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>A Hugo site</title>
<link>https://blog.example.org/</link>
<item><title>About us</title><link>https://blog.example.org/about/</link>
<pubDate>Mon, 01 Jan 0001 00:00:00 +0000</pubDate><description>An undated page about LLM work.</description></item>
<item><title>Far future</title><link>https://blog.example.org/future/</link>
<pubDate>Fri, 01 Jan 2100 00:00:00 +0000</pubDate><description>More LLM work.</description></item>
<item><title>A post on language models</title><link>https://blog.example.org/post/</link>
<pubDate>Fri, 20 Nov 2026 10:00:00 +0000</pubDate><description>LLM things.</description></item>
</channel></rss>"""

TOPICS = "    topics: [{name: LLMs, keywords: [language model, LLM]}]\n"


def test_a_feed_dated_year_one_never_poisons_the_store(tmp_path, feed_server):
    url = feed_server.serve("/hugo.xml", Reply(200, YEAR_ONE, {"Content-Type": "application/rss+xml"}))
    config = write_config(tmp_path, [{"name": "hugo", "type": "feed", "url": url}], extra=TOPICS)
    fetched = digest("-c", str(config), "fetch")
    assert fetched.returncode == 0 and "3 new papers" in fetched.stdout
    assert "2 items with an impossible date (such as 0001-01-01): stored without a date" in fetched.stderr
    papers = {p["title"]: p for p in json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)}
    assert papers["About us"]["published"] is None and papers["Far future"]["published"] is None
    assert papers["A post on language models"]["published"] == "2026-11-20T10:00:00+00:00"
    for command in (["papers"], ["status"], ["preview", "alice@example.org"], ["send", "--dry-run"]):
        result = digest("-c", str(config), *command)
        assert result.returncode == 0, (command, result.stderr)
        assert "isoformat" not in result.stderr and "internal error" not in result.stderr


LONG_TITLE = "A language model " + "A" * 200_000  # pushed every other paper out of the e-mail
HOSTILE_LINKS = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>
<item><title>Scripted language model</title><link>javascript:alert(1)</link><description>LLM.</description></item>
<item><title>Inline language model</title><link>data:text/html;base64,PHNjcmlwdD4=</link><description>LLM.</description></item>
<item><title>{LONG_TITLE}</title><link>https://blog.example.org/long/</link><description>{"LLM " * 20_000}</description></item>
<item><title>A fair language model</title><link>https://blog.example.org/fair/</link><description>LLM.</description></item>
</channel></rss>""".encode()


def test_links_that_are_not_web_addresses_and_huge_text_never_reach_a_digest(tmp_path, feed_server):
    url = feed_server.serve("/hostile.xml", Reply(200, HOSTILE_LINKS, {"Content-Type": "application/rss+xml"}))
    config = write_config(tmp_path, [{"name": "hostile", "type": "feed", "url": url}], extra=TOPICS)
    fetched = digest("-c", str(config), "fetch")
    assert fetched.returncode == 0 and "2 new papers" in fetched.stdout, fetched.stdout + fetched.stderr
    assert "2 items whose link is not a web address (such as 'javascript:alert(1)'): skipped" in fetched.stderr
    assert "1 item with text far longer than a paper's" in fetched.stderr
    papers = {p["url"]: p for p in json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)}
    assert set(papers) == {"https://blog.example.org/long/", "https://blog.example.org/fair/"}
    long = papers["https://blog.example.org/long/"]
    assert len(long["title"]) <= 1_000 and long["title"].startswith("A language model") and long["title"].endswith("…")
    assert len(long["abstract"]) <= 20_000
    text = digest("-c", str(config), "preview", "alice@example.org", "--since", "30d")
    assert text.returncode == 0, text.stderr
    assert "A fair language model" in text.stdout and "Nothing new matches" not in text.stdout
    assert "javascript:" not in text.stdout and "data:text" not in text.stdout


def test_an_email_whose_cards_do_not_fit_lists_the_papers_and_never_says_nothing_matched():
    """A digest whose every card is too big for the e-mail's size budget (Gmail clips past
    102 KB) keeps its papers as links under "More papers", and the text part says so too."""
    from digest.config import Config
    from digest.models import Digest, DigestEntry, Paper, Section
    from digest.render.compose import Composer
    from digest.render.email_context import with_kept

    config = Config.model_validate({"sender": {"from": "Paper Digest <digest@example.org>"}, "sources": [],
                                    "subscribers": [{"email": "alice@example.org", "topics": [TOPIC]}]})
    now = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    entries = tuple(DigestEntry(Paper(id=f"2611.0000{n}", title=f"Paper {n} " + "word " * 190,
                                      abstract="text " * 4_000, url=f"https://arxiv.org/abs/2611.0000{n}"),
                                1.0 - n / 10, "why") for n in range(3))
    digest_ = Digest("alice@example.org", None, now, now - timedelta(days=1), (Section("LLMs", entries),))
    composer = Composer(config)
    links_only = composer.renderer.html(with_kept(composer.values(digest_, config.subscribers[0]), 0))
    email = Composer(config, budget=len(links_only.encode()) + 100).email(digest_, config.subscribers[0])
    assert "Paper 2 word" in email.html and "text text" not in email.html  # no card fits; their links do
    text = email.message.get_body(("plain",)).get_content()
    assert "More papers" in text and "Nothing new matches" not in text
    assert "Nothing new matches" not in email.message.get_body(("html",)).get_content()


TOPIC = {"name": "LLMs", "keywords": ["language model", "LLM"]}


@sqlite_only
def test_rows_written_by_older_versions_are_read(tmp_path):
    config = write_config(tmp_path, [], extra=TOPICS)
    assert digest("-c", str(config), "papers").returncode == 0  # creates the database
    with sqlite3.connect(tmp_path / "digest.db") as db:
        row = ("title, url, authors, abstract, categories, ai_keywords, published, first_seen_at, updated_at",
               "?, ?, '[]', ?, '[]', '[]', ?, ?, ?")
        db.execute(f"INSERT INTO papers (id, {row[0]}) VALUES (?, {row[1]})",  # noqa: S608 - fixed text
                   ("url:https://blog.example.org/old", "An LLM page from an older version", "https://blog.example.org/old",
                    "About LLM.", "1-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z"))
        db.execute(f"INSERT INTO papers (id, {row[0]}) VALUES (?, {row[1]})",  # noqa: S608
                   ("url:https://blog.example.org/bad", "An LLM row with a broken time", "https://blog.example.org/bad",
                    "About LLM.", "yesterday", "2099-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z"))
        db.execute("UPDATE papers SET authors = 'not json', categories = '[' WHERE id = ?",
                   ("url:https://blog.example.org/bad",))
    listed = json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)
    by_title = {p["title"]: p for p in listed}
    assert by_title["An LLM row with a broken time"]["authors"] == []
    assert by_title["An LLM page from an older version"]["published"] == "0001-01-01T00:00:00+00:00"
    assert by_title["An LLM row with a broken time"]["published"] is None
    preview = digest("-c", str(config), "preview", "alice@example.org", "--format", "json", "--since", "30d")
    assert preview.returncode == 0 and "LLM" in preview.stdout


def test_one_bad_hugging_face_item_never_loses_the_source(tmp_path, feed_server):
    items = json.loads((REALWORLD / "hf-daily-papers-2026-06-12.json").read_text())
    items[0]["paper"]["upvotes"] = 10**30  # out of range for any database integer
    body = json.dumps(items[:-1])[:-1]
    body += ', {"paper": {"id": "2606.99999", "title": "Long", "upvotes": ' + "9" * 4400 + "}}"  # past Python's limit
    body += ", " + "[" * 100_000 + "]" * 100_000  # nested past the decoder's recursion limit
    body += ", " + json.dumps(items[-1]) + "]"
    url = feed_server.serve("/daily_papers", Reply(200, body.encode(), {"Content-Type": "application/json"}))
    config = write_config(tmp_path, [{"name": "hf", "type": "huggingface", "url": url, "fill_categories": False}],
                          extra=TOPICS)
    result = digest("-c", str(config), "fetch")
    assert result.returncode == 0, result.stderr
    assert "31 new papers" in result.stdout and "unexpected error" not in result.stderr
    assert "hf: 31 papers, 1 item skipped: item 31: too deeply nested" in result.stderr
    stored = {p["id"]: p for p in json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)}
    assert stored[items[0]["paper"]["id"]]["upvotes"] is None  # kept, its count unknown
    assert stored["2606.99999"]["upvotes"] is None and stored[items[-1]["paper"]["id"]]["upvotes"] == items[-1]["paper"]["upvotes"]


@pytest.mark.no_postgresql
def test_sigterm_to_send_finishes_the_message_in_flight_and_summarises(tmp_path, fetched_db):  # noqa: F811
    emails = [f"reader{n}@example.org" for n in range(6)]
    with SmtpServer() as server:
        server.handler.hold_after = 1  # the second message waits at the end of DATA
        config = setup(tmp_path, fetched_db, server.port, emails)
        errors = tmp_path / "stderr.txt"
        with errors.open("w") as err_file:
            process = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "send"],
                                       stdout=subprocess.PIPE, stderr=err_file, text=True)
            assert server.handler.holding.wait(timeout=60)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60  # the signal taken while the message is held
            while "finishing the message in flight" not in errors.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            server.handler.release.set()
            out, _ = process.communicate(timeout=60)
        err = errors.read_text()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "SIGTERM: finishing the message in flight" in err
    assert "2 sent" in out and "4 deferred" in out and "left for the next run" in out
    states = Counter(e.state for e in Ledger(Store(load_config(config).database_url())).entries())
    assert states == Counter({"sent": 2, "pending": 4})


# ---------------------------------------------------------------- state that survives, secrets that stay secret


def mode(path) -> int:  # noqa: ANN001
    return path.stat().st_mode & 0o777


@pytest.mark.no_postgresql
def test_state_files_are_private_and_the_key_lives_apart(tmp_path, fetched_db):  # noqa: F811
    with SmtpServer() as server:
        config = setup(tmp_path, fetched_db, server.port, ["a@example.org"])
        (tmp_path / "digest.db").chmod(0o644)  # as older versions left it
        assert digest("-c", str(config), "send").returncode == 0
        for name in ("digest.db", "digest.key", "digest.key.sent"):
            assert (tmp_path / name).exists() and mode(tmp_path / name) == 0o600, name
        open_store(load_config(config)).secret()  # a connection open: the -wal and -shm files exist
        for name in ("digest.db-wal", "digest.db-shm"):
            assert (tmp_path / name).exists() and mode(tmp_path / name) == 0o600, name
        key = (tmp_path / "digest.key").read_text().strip()
        assert key and key not in (tmp_path / "digest.db").read_bytes().decode("latin-1")  # not in the database
        link = server.handler.received[0]["List-Unsubscribe"].split(",")[0].strip("<>")
        token = link.rsplit("/", 1)[1]
        from digest.render.links import email_from_token

        assert email_from_token(key, token) == "a@example.org"


@pytest.mark.no_postgresql
def test_a_lost_signing_key_is_refused_not_replaced_once_digests_were_sent(tmp_path, fetched_db):  # noqa: F811
    """A new key made in its place broke every unsubscribe link already mailed, without a word."""
    with SmtpServer() as server:
        config = setup(tmp_path, fetched_db, server.port, ["a@example.org"])
        assert digest("-c", str(config), "send").returncode == 0 and len(server.handler.received) == 1
    (tmp_path / "digest.key").unlink()
    with pytest.raises(StoreError, match="the signing key .*digest.key is gone, but digests were sent with it"):
        open_store(load_config(config)).signing_secret()
    shown = digest("-c", str(config), "preview", "a@example.org", "--since", "30d")
    assert shown.returncode == 1 and "restore it from a backup" in shown.stderr and "digest.key.sent" in shown.stderr
    assert not (tmp_path / "digest.key").exists()
    (tmp_path / "digest.key.sent").unlink()  # starting again, as the message says
    assert open_store(load_config(config)).signing_secret() and (tmp_path / "digest.key").exists()


@sqlite_only
def test_a_full_disk_is_said_as_such(tmp_path, monkeypatch):
    """"database or disk is full" came with the hint to check `state:` and that the file is writable."""
    import sqlalchemy as sa

    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")

    def full(conn):  # noqa: ANN001, ANN202 - what SQLite raises when the disk is full
        raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    with pytest.raises(StoreError, match=r"database or disk is full \(the disk it is on is full: free some space"):
        store.write(full)


@sqlite_only
def test_a_state_or_key_file_that_names_another_file_leaves_it_as_it_is(tmp_path):
    """`state: sqlite:////etc/passwd` made /etc/passwd 0600 (the database file is made private
    before it is opened) and every other user of the machine unknown to the system."""
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n")
    other.chmod(0o644)
    config = write_config(tmp_path, [], extra=TOPICS, state=f"sqlite:///{other}")
    result = digest("-c", str(config), "status")
    assert result.returncode == 1 and f"{other} is not a SQLite database (it holds something else)" in result.stderr
    config.write_text(config.read_text().replace(f"state: sqlite:///{other}", "key_file: passwd"))
    with pytest.raises(StoreError, match="does not hold a signing key"):
        open_store(load_config(config)).signing_secret()
    config.write_text(config.read_text().replace("key_file: passwd", "key_file: /dev/zero"))  # read for ever, once
    with pytest.raises(StoreError, match="/dev/zero does not hold a signing key"):
        open_store(load_config(config)).signing_secret()
    assert mode(other) == 0o644 and other.read_text().startswith("root:x:0:0")


@sqlite_only
def test_an_older_database_key_moves_to_the_key_file(tmp_path):
    config = write_config(tmp_path, [], extra=TOPICS)
    old = Store(f"sqlite:///{tmp_path / 'digest.db'}")  # as an older version: the key in the database
    stored = old.secret()
    assert not (tmp_path / "digest.key").exists()
    new = open_store(load_config(config))
    assert new.signing_secret() == stored  # links already mailed stay valid
    assert (tmp_path / "digest.key").read_text().strip() == stored and mode(tmp_path / "digest.key") == 0o600


@pytest.mark.no_postgresql
def test_a_lost_database_is_noticed_not_resent_to_everyone(tmp_path, fetched_db):  # noqa: F811
    with SmtpServer() as server:
        config = setup(tmp_path, fetched_db, server.port, ["a@example.org", "gone@example.org"])
        assert digest("-c", str(config), "unsubscribe", "gone@example.org").returncode == 0
        assert "1 sent" in digest("-c", str(config), "send").stdout
        backup = digest("-c", str(config), "backup")
        assert backup.returncode == 0 and "backed up" in backup.stdout
        saved = sorted((tmp_path / "backups").glob("digest-*.db"))
        assert len(saved) == 1 and mode(saved[0]) == 0o600
        for name in ("digest.db", "digest.db-wal", "digest.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        shutil.copy(fetched_db, tmp_path / "digest.db")  # a fresh database with the papers, no ledger
        refused = digest("-c", str(config), "send")
        assert refused.returncode == 1 and len(server.handler.received) == 1
        assert "holds no digests, but this configuration has sent digests" in refused.stderr
        assert str(saved[0]) in refused.stderr and "--fresh-state" in refused.stderr
        shutil.copy(saved[0], tmp_path / "digest.db")  # the restore the message describes
        again = digest("-c", str(config), "send")
        assert again.returncode == 0 and "0 sent" in again.stdout and "unsubscribed" in again.stdout
        assert len(server.handler.received) == 1  # nobody got today's digest twice
        for name in ("digest.db", "digest.db-wal", "digest.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        shutil.copy(fetched_db, tmp_path / "digest.db")
        fresh = digest("-c", str(config), "send", "--fresh-state")  # on purpose
        assert fresh.returncode == 0 and "2 sent" in fresh.stdout


@sqlite_only
def test_backup_while_the_database_is_being_written(tmp_path, fetched_db):  # noqa: F811
    shutil.copy(fetched_db, tmp_path / "digest.db")
    config = write_config(tmp_path, [], extra=TOPICS)
    store = open_store(load_config(config))
    ledger = Ledger(store)
    writing = threading.Event()

    def write_many() -> None:
        for n in range(400):
            ledger.record(f"r{n}@example.org", "p", "<m>", ["x"], datetime(2026, 11, 23, tzinfo=UTC))
            writing.set()

    writer = threading.Thread(target=write_many)
    writer.start()
    writing.wait(timeout=30)
    target = tmp_path / "copy.db"
    result = digest("-c", str(config), "backup", str(target))
    writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert 0 < copy.execute("SELECT count(*) FROM papers").fetchone()[0]
        copied = copy.execute("SELECT count(*) FROM digests").fetchone()[0]
    assert 0 <= copied <= 400  # a consistent moment of a live database


@sqlite_only
def test_a_backup_replaces_an_older_backup_never_another_file_nor_the_database(tmp_path, fetched_db):  # noqa: F811
    shutil.copy(fetched_db, tmp_path / "digest.db")
    config = write_config(tmp_path, [], extra=TOPICS)
    notes = tmp_path / "notes.txt"
    notes.write_text("important\n")
    result = digest("-c", str(config), "backup", str(notes))
    assert result.returncode == 2 and "notes.txt exists and is not a SQLite database: left as it is" in result.stderr
    assert notes.read_text() == "important\n"  # it was overwritten by the copy
    before = (tmp_path / "digest.db").read_bytes()
    result = digest("-c", str(config), "backup", "digest.db", cwd=tmp_path)
    assert result.returncode == 2 and "is the state database itself" in result.stderr
    assert (tmp_path / "digest.db").read_bytes() == before
    missing = digest("-c", str(config), "backup", str(tmp_path / "safe" / "copy.db"))
    assert missing.returncode == 2 and "no folder" in missing.stderr and not (tmp_path / "safe").exists()
    (tmp_path / "safe").mkdir()
    open_store(load_config(config)).signing_secret()  # the key, as the first link signed makes it
    for _ in range(2):  # an older backup is replaced
        done = digest("-c", str(config), "backup", str(tmp_path / "safe" / "copy.db"))
        assert done.returncode == 0 and f"its signing key beside it, {tmp_path / 'safe' / 'digest.key'}" in done.stdout
    key = tmp_path / "safe" / "digest.key"  # the key beside it: a database restored without it has broken links
    assert key.read_text() == (tmp_path / "digest.key").read_text() and mode(key) == 0o600


def test_backup_of_postgresql_says_pg_dump(tmp_path):
    config = write_config(tmp_path, [], extra=TOPICS)
    result = digest("-c", str(config), "backup")
    if DATABASE == "postgresql":
        assert result.returncode == 2 and "pg_dump" in result.stderr and "+psycopg" not in result.stderr, result.stderr
    else:
        assert result.returncode == 0
    from digest.errors import StoreError

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.file = None  # as for a PostgreSQL URL
    with pytest.raises(StoreError, match="pg_dump"):
        store.backup(tmp_path / "y.db")


# ---------------------------------------------------------------- slow-drip and parser bombs


def attribute_bomb(count: int) -> bytes:
    attributes = " ".join(f'a{n}="{n}"' for n in range(count))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
            f"<item {attributes}><title>bomb</title><link>https://e.org/x</link></item></channel></rss>").encode()


def test_slow_drip_and_attribute_bombs_end_at_the_deadline_and_the_others_are_stored(tmp_path, feed_server):
    good = REALWORLD.joinpath("hf-blog-rss.xml").read_bytes()
    sources = [
        {"name": "drip", "type": "feed", "url": feed_server.serve("/drip", Reply(200, good, drip=0.5)), "deadline": 3},
        {"name": "bomb", "type": "feed", "url": feed_server.serve("/bomb", Reply(200, attribute_bomb(100_000))),
         "deadline": 3},
        {"name": "good", "type": "feed", "url": feed_server.serve("/good", Reply(200, good))},
    ]
    config = write_config(tmp_path, sources, extra=TOPICS)
    started = time.monotonic()
    result = digest("-c", str(config), "fetch")
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and "2 of 3 sources failed" in result.stderr
    assert "drip: the server sent too slowly to finish within the deadline" in result.stderr
    assert "bomb: reading the document took longer than the source's deadline; abandoned" in result.stderr
    assert "from 1 of 3 sources" in result.stdout
    assert elapsed < 30  # both deadlines of 3 s, side by side; not the 400 s the bomb takes to parse


@pytest.mark.no_postgresql
def test_a_stuck_feed_never_holds_the_digests_back_and_sigterm_stops_in_seconds(tmp_path, fetched_db):  # noqa: F811
    good = REALWORLD.joinpath("hf-blog-rss.xml").read_bytes()
    server = FeedServer()
    server.thread.start()
    due = datetime.now(UTC) - timedelta(hours=1)
    try:
        with SmtpServer() as smtp:
            config = setup(tmp_path, fetched_db, smtp.port, ["a@example.org"],
                           defaults=f"  schedule: daily {due:%H}:{due:%M}\n")
            drip = {"name": "drip", "type": "feed", "url": server.serve("/drip", Reply(200, good * 50, drip=0.5)),
                    "deadline": 600}  # a download that would take hours
            config.write_text(config.read_text().replace("sources:\n", f"fetch_wait: 3s\nsources:\n  - {json.dumps(drip)}\n"))
            log_file = tmp_path / "run.log"
            with log_file.open("w") as log:
                daemon = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "run", "--tick", "1"],
                                          stdout=log, stderr=subprocess.STDOUT)
                try:
                    smtp.wait_for(1, timeout=90)  # the due digest goes out while the drip goes on (after fetch_wait)
                    assert [str(m["To"]) for m in smtp.handler.received] == ["a@example.org"], log_file.read_text()
                finally:
                    stopping = time.monotonic()
                    daemon.send_signal(signal.SIGTERM)
                    daemon.wait(timeout=60)
                    stopped_in = time.monotonic() - stopping
            output = log_file.read_text()
            assert daemon.returncode == 0, output
            assert stopped_in < 15, output  # the drip and its parse abandoned at once
            assert "a fetch is still under way" in output and "Traceback" not in output
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


# ---------------------------------------------------------------- kill -9 against a real MTA


@pytest.fixture(scope="module")
def mta():
    from .postfix import Postfix, available

    why = available()
    if why:
        pytest.skip(why)
    server = Postfix().start()
    yield server
    server.stop()


@pytest.mark.postfix
def test_kill_9_against_postfix_loses_nothing_and_duplicates_only_the_message_in_flight(tmp_path, fetched_db, mta):  # noqa: F811
    from .postfix import kill_trials
    from .test_deliver import write

    emails = [f"reader{n:02d}@example.org" for n in range(20)]
    # Postfix forks a process to greet each connection: on two busy cores (CI runs the PostgreSQL
    # pass beside this one) a greeting may take seconds, and its speed is not what is tested here.
    config_text = write(tmp_path, mta.port, emails, timeout=10).read_text()
    for aim in ("random", "sending"):  # anywhere in the run; the instant the end of a message goes out
        totals = kill_trials(tmp_path / aim, mta, fetched_db, config_text, emails, trials=4, seed=9, aim=aim)
        said = str(totals)  # whole (pytest shortens a dict's repr)
        assert totals["killed_mid_run"] >= (3 if aim == "sending" else 1), said  # the kills landed while sending
        assert totals["lost"] == 0 and totals["left_unsent"] == 0, said
        assert totals["duplicated"] <= totals["killed_mid_run"], said  # at most the message in flight, per kill
        assert totals["duplicates_with_other_message_id"] == 0, said
