"""Delivery against a real SMTP server on loopback: the ledger, failures, retries, kill -9,
concurrent runs, the headers of what arrives."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import load_config
from digest.deliver import Delivery
from digest.gather import gather
from digest.render.links import email_from_token
from digest.store import Store, open_store
from digest.store.ledger import Ledger

from .conftest import Template, fresh_database
from .smtp_server import SmtpServer

pytestmark = [pytest.mark.clock, pytest.mark.database]  # also under faketime, and on PostgreSQL (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data" / "samples"  # real titles, made-up ids and authors
SOURCES = [{"name": "arxiv", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
           {"name": "hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")}]


def safe_schedule(now: datetime | None = None) -> str:
    """A daily slot 12 hours from now, either way: a test that sends on the real clock can
    never see the slot change under it (a manual send is for the latest slot)."""
    slot = (now or datetime.now(UTC)) - timedelta(hours=12)
    return f"  schedule: daily {slot:%H}:{slot:%M}\n"


def write(tmp_path: Path, port: int, emails: list[str], *, smtp_extra: str = "", defaults: str = "",
          keywords: str = "[language model, LLM]", security: str = "none", state: str | None = None,
          extra: str = "", timeout: float = 2) -> Path:
    subscribers = "".join(f"  - email: {e}\n    topics:\n      - name: LLMs\n        keywords: {keywords}\n" for e in emails)
    path = tmp_path / "subscribers.yaml"
    path.write_text(
        'sender:\n  from: "Paper Digest <digest@example.org>"\n'
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: {security}\n  timeout: {timeout:g}\n  retry_wait: 0.05\n{smtp_extra}"
        "base_url: https://digest.example.org\n" + (f"state: {state}\n" if state else "") + extra +
        f"defaults:\n  max_papers: 5\n{defaults}{'' if 'schedule:' in defaults else safe_schedule()}"
        "sources:\n" + "".join(f"  - {json.dumps(s)}\n" for s in SOURCES) + "subscribers:\n" + subscribers,
        encoding="utf-8")
    return path


def fetch_samples(directory: Path, now: datetime | None = None, database: str | None = None) -> Path:
    """The samples fetched into directory/digest.db, first seen at `now` (the real time by default)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = load_config(write(directory, 25, ["x@example.org"], state=database))
    store = Store(config.database_url())
    gather(config, store, now=now)
    store.close()
    return directory / "digest.db"


def fetch_template(directory: Path, now: datetime | None = None) -> Template:
    """The samples fetched once into a database of the backend under test, to copy per test."""
    url = fresh_database(directory, "digest.db")
    fetch_samples(directory, now, database=url)
    return Template(url)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> Template:
    """The samples fetched once into the backend under test (DIGEST_TEST_DATABASE), at the real time."""
    return fetch_template(tmp_path_factory.mktemp("fetched"))


@pytest.fixture(scope="module")
def fetched_db(tmp_path_factory) -> Path:
    """The samples fetched once, at the real time (these tests run the CLI on the real clock);
    each test starts from a copy."""
    return fetch_samples(tmp_path_factory.mktemp("fetched"))


def setup(tmp_path: Path, fetched_db: Path | Template, port: int, emails: list[str], **kwargs) -> Path:
    """A configuration in tmp_path with a copy of the fetched samples (a SQLite file, or a
    template of the backend under test)."""
    if isinstance(fetched_db, Template):
        return write(tmp_path, port, emails, state=fetched_db.copy(tmp_path), **kwargs)
    shutil.copy(fetched_db, tmp_path / "digest.db")
    return write(tmp_path, port, emails, **kwargs)


def digest_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "digest", "-c", str(config), *args],
                            capture_output=True, text=True, timeout=180)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def delivery(config_path: Path) -> Delivery:
    config = load_config(config_path)
    return Delivery(config, Store(config.database_url()))


EMAILS = [f"reader{n}@example.org" for n in range(6)]


def test_a_templates_folder_lost_while_running_never_holds_the_digests_back(tmp_path, fetched, caplog):
    """Checked at start (`digest run`, `digest send`); lost later, the built-in templates send
    meanwhile, said loudly: held back past their grace, the digests would be lost."""
    own = tmp_path / "mine"
    shutil.copytree(ROOT / "templates", own)
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2], extra="templates: mine\n")
        running = delivery(config)
        shutil.rmtree(own)
        with caplog.at_level(logging.ERROR):
            outcomes = running.run()
        assert [o.status for o in outcomes] == ["sent", "sent"]
        assert len(server.handler.received) == 2
    assert f"templates: no such folder: {own}; sending with the built-in templates until it is back" in caplog.text


def test_send_once_with_the_right_headers(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS)
        first = digest_cli("send", config=config)
        assert first.returncode == 0, first.stderr
        assert "6 sent, 0 empty" in first.stdout
        again = digest_cli("send", config=config)
        assert again.returncode == 0 and "0 sent" in again.stdout and "6 skipped" in again.stdout and "already" in again.stdout
        after = json.loads(digest_cli("preview", "reader0@example.org", "--format", "json", config=config).stdout)
        assert after["sections"] == []  # what was delivered is not new any more
        wider = json.loads(digest_cli("preview", "reader0@example.org", "--format", "json", "--since", "30d",
                                      config=config).stdout)
        assert wider["sections"] and not {p["id"] for s in wider["sections"] for p in s["papers"]} & \
            set(Ledger(Store(load_config(config).database_url())).delivered("reader0@example.org"))
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(EMAILS)

    secret = open_store(load_config(config)).signing_secret()  # the key file beside the config
    ids = set()
    for message in server.handler.received:
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
                     "List-Unsubscribe-Post", "MIME-Version", "Content-Type"):
            assert len(message.get_all(name) or []) == 1, name
        assert len(set(message.keys())) == len(message.keys())  # no header twice
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].split(",")[0].strip("<> ")
        assert url.startswith("https://digest.example.org/unsubscribe/")
        token = url.rsplit("/", 1)[1]
        assert email_from_token(secret, token) == str(message["To"])
        assert "example" not in token and "reader" not in token  # opaque: no address in any URL
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        ids.add(message["Message-ID"])
    assert len(ids) == 6

    ledger = Ledger(Store(load_config(config).database_url()))
    assert all(e.state == "sent" and len(e.papers) == 5 for e in ledger.entries())
    assert len(ledger.delivered("reader0@example.org")) == 5


@pytest.mark.undated
def test_sent_digests_carry_the_manage_link_of_the_directory_rows_generation(tmp_path, fetched):
    """A digest's manage link is of the generation on the subscriber's directory row (read by
    the send path anyway): after renew_manage moved it on, what is sent carries the new one;
    so do --to and the previews."""
    from digest.render.compose import Composer
    from digest.render.links import manage_from_token, manage_url
    from digest.store.directory import Directory
    from digest.web.preview import _render

    from .test_render import manage_links

    def links(message) -> tuple[str | None, str | None, str | None]:  # noqa: ANN001
        return manage_links(message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content())

    emails = EMAILS[:3]
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, emails)
        sender = delivery(config)
        secret = sender.store.signing_secret()

        def link(key: str, generation: int) -> str:
            return manage_url("https://digest.example.org", secret, key, generation)

        sender.run(["reader0@example.org"], to="me@example.org")  # before any fresh link: generation 0
        assert links(server.handler.received[-1]) == (link("reader0@example.org", 0),) * 3
        now = datetime.now(UTC)
        directory = Directory(sender.store)
        assert directory.count() == 3  # synced from subscribers.yaml by the run
        for _ in range(3):
            generation = directory.renew_manage("reader0@example.org", now, timedelta(days=1))
        assert generation == 3 and directory.renew_manage("reader1@example.org", now, timedelta(days=1)) == 1

        shown = digest_cli("preview", "reader0@example.org", "--format", "text", config=config)
        assert f"Manage your topics: {link('reader0@example.org', 3)}\n" in shown.stdout
        composer = Composer(sender.config, secret=secret)
        previewed, _ = _render(sender.config, composer, sender.store, sender.config.subscribers[0])  # preview --serve
        assert manage_links(previewed.html, previewed.text) == (link("reader0@example.org", 3),) * 3
        sender.run(["reader0@example.org"], to="me@example.org")
        assert links(server.handler.received[-1]) == (link("reader0@example.org", 3),) * 3

        server.handler.received.clear()
        outcomes = delivery(config).run()
        assert [o.status for o in outcomes] == ["sent"] * 3
    generations = {"reader0@example.org": 3, "reader1@example.org": 1, "reader2@example.org": 0}
    for message in server.handler.received:
        to = str(message["To"])
        header, footer, text = links(message)
        assert header == footer == text == link(to, generations[to]), to
        assert manage_from_token(secret, header.rsplit("/", 1)[1]) == (to, generations[to])
    assert sorted(str(m["To"]) for m in server.handler.received) == emails


@pytest.mark.undated
def test_failures_never_stop_the_batch_and_are_recorded(tmp_path, fetched):
    with SmtpServer() as server:
        script = server.handler.script
        script["reader1@example.org"] = ["550 5.1.1 No such user"]
        script["reader2@example.org"] = ["451 4.3.0 Try again later"]  # then accepted: retried in the run
        script["reader3@example.org"] = ["451 4.3.0 Busy"] * 10  # still refused after the retries
        script["reader4@example.org"] = ["drop"]  # the connection drops at the end of DATA, no reply
        config = setup(tmp_path, fetched, server.port, EMAILS)
        result = digest_cli("send", config=config)
        assert result.returncode == 0
        got = Counter(str(m["To"]) for m in server.handler.received)
        assert got == Counter({"reader0@example.org": 1, "reader2@example.org": 1, "reader5@example.org": 1})
        assert "3 sent" in result.stdout and "1 deferred, 1 failed, 1 uncertain" in result.stdout
        assert "550 5.1.1 No such user" in result.stdout
        assert "sent once more on the next run" in result.stdout  # never again in the same run

        status = json.loads(digest_cli("status", "--format", "json", config=config).stdout)
        by = {r["subscriber"]: r for r in status}
        assert by["reader1@example.org"]["last_state"] == "failed" and by["reader1@example.org"]["hard_failures"] == 1
        assert by["reader3@example.org"]["last_state"] == "pending" and "451" in by["reader3@example.org"]["last_error"]
        assert by["reader0@example.org"]["last_state"] == "sent" and by["reader0@example.org"]["papers_waiting"] == 0

        assert by["reader4@example.org"]["last_state"] == "uncertain"
        # The slot and its local time are one moment; a sent time only for what was sent
        sent, waiting = by["reader0@example.org"], by["reader3@example.org"]
        assert sent["last_sent"] is not None and waiting["last_sent"] is None and waiting["last_sent_local"] is None
        slot = datetime.fromisoformat(waiting["last_digest"])
        assert waiting["last_digest_local"] == slot.strftime("%a %d %b %H:%M UTC")
        shown = digest_cli("status", config=config)
        assert all(line.count("\t") == 5 for line in shown.stdout.splitlines())  # rows only: the errors on stderr
        assert "reader1@example.org: 550 5.1.1 No such user" in shown.stderr
        summary_line = shown.stderr.strip().splitlines()[-1]  # the whole at a glance
        assert summary_line.startswith("6 subscribers: ") and "their latest digests: 3 sent" in summary_line
        assert "1 failed" in summary_line and "1 uncertain" in summary_line and "1 pending" in summary_line
        table = {line.split("\t")[0]: line.split("\t") for line in shown.stdout.splitlines()}
        assert table["reader3@example.org"][2] == f"{waiting['last_digest_local']} (pending)"  # not as if sent
        assert table["reader0@example.org"][2] == sent["last_sent_local"]

        script["reader3@example.org"] = []  # the server recovers: the next run sends what was deferred
        again = digest_cli("send", config=config)  # and the uncertain one, once more
        assert "2 sent" in again.stdout and "sent again: the first try's reply never came" in again.stdout
        got = Counter(str(m["To"]) for m in server.handler.received)
        assert got["reader3@example.org"] == 1 and got["reader4@example.org"] == 1 and got["reader1@example.org"] == 0
        assert sum(got.values()) == 5
        assert "0 sent" in digest_cli("send", config=config).stdout  # nothing a third time


@pytest.mark.undated
def test_repeated_hard_failures_suspend(tmp_path):
    moments = [datetime(2026, 11, 20, 9, tzinfo=UTC), datetime(2026, 11, 21, 9, tzinfo=UTC),
               datetime(2026, 11, 22, 9, tzinfo=UTC)]
    fetched = fetch_template(tmp_path / "fetched", moments[0] - timedelta(hours=10))  # on the test's clock too
    with SmtpServer() as server:
        server.handler.script["gone@example.org"] = ["550 5.1.1 No such user"] * 5
        config = setup(tmp_path, fetched, server.port, ["gone@example.org", "ok@example.org"],
                       smtp_extra="  suspend_after: 2\n", defaults="  send_empty: true\n")
        outcomes = []
        for moment in moments:
            d = delivery(config)
            d.clock = lambda moment=moment: moment
            outcomes.append({o.subscriber: o for o in d.run(scheduled=False)})
        assert outcomes[0]["gone@example.org"].status == "failed"
        assert "suspended" in outcomes[1]["gone@example.org"].detail
        assert outcomes[2]["gone@example.org"].status == "suspended"
        assert [o["ok@example.org"].status for o in outcomes] == ["sent", "sent", "sent"]
        status = digest_cli("status", config=config)
        assert "suspended" in status.stdout


@pytest.mark.undated
def test_stalled_server_times_out_and_the_rest_go_out(tmp_path, fetched):
    with SmtpServer() as server:
        server.handler.script["reader0@example.org"] = ["stall 5"] * 5
        config = setup(tmp_path, fetched, server.port, EMAILS[:3], smtp_extra="  retries: 1\n  data_timeout: 2\n")
        started = time.monotonic()
        result = digest_cli("send", config=config)
        assert time.monotonic() - started < 60
        assert "2 sent" in result.stdout and "1 uncertain" in result.stdout
        assert {str(m["To"]) for m in server.handler.received} >= {"reader1@example.org", "reader2@example.org"}


@pytest.mark.undated
def test_unreachable_server_and_refused_login_say_what_to_check(tmp_path, fetched):
    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = setup(tmp_path, fetched, port, EMAILS[:1])
        result = digest_cli("send", config=config)
    assert result.returncode == 1
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in result.stderr and "smtp.host, smtp.port" in result.stderr
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1],
                       smtp_extra="  username: digest\n  password_env: DIGEST_TEST_PASSWORD\n")
        result = digest_cli("send", config=config)
        assert result.returncode == 1 and "DIGEST_TEST_PASSWORD" in result.stderr
    entries = Ledger(Store(load_config(config).database_url())).entries()
    assert entries and all(e.state == "pending" for e in entries)  # nothing lost: the next run sends them


def test_dry_run_and_to_record_nothing(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2])
        dry = digest_cli("send", "--dry-run", config=config)
        assert dry.returncode == 0 and "2 rendered (dry run)" in dry.stdout and not server.handler.received
        test = digest_cli("send", "reader1@example.org", "--to", "me@example.org", config=config)
        assert test.returncode == 0 and "1 sent" in test.stdout
        assert [str(m["To"]) for m in server.handler.received] == ["me@example.org"]
        assert Ledger(Store(load_config(config).database_url())).entries() == []
        server.handler.script["me@example.org"] = ["451 4.3.0 Try again later"] * 10
        refused = digest_cli("send", "reader1@example.org", "--to", "me@example.org", config=config)
        assert refused.returncode == 1 and "(a copy to me@example.org: not recorded, not tried again)" in refused.stdout
        assert "left for the next run" not in refused.stdout  # nothing waits: nothing was recorded
        real = digest_cli("send", config=config)
        assert "2 sent" in real.stdout
        unknown = digest_cli("send", "nobody@example.org", config=config)
        assert unknown.returncode == 2 and "no subscriber 'nobody@example.org'" in unknown.stderr  # the user's to fix


def test_empty_digests_are_not_sent_unless_asked(tmp_path, fetched):
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], keywords="[nothing-matches-this-xyz]")
        result = digest_cli("send", config=config)
        assert "0 sent, 1 empty" in result.stdout and not server.handler.received
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], keywords="[nothing-matches-this-xyz]",
                       defaults="  send_empty: true\n")
        result = digest_cli("send", config=config)
        assert "1 sent" in result.stdout
        assert "Nothing new matches your topics" in server.handler.received[0].get_body(("plain",)).get_content()


def _run_and_kill(config: Path, server: SmtpServer, after: int, pause: float) -> None:
    process = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "send"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.wait_for(after, timeout=60)
    time.sleep(pause)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


# Killed while the server holds the next message (0.1 s into its 0.3 s of work: the end of DATA
# sent, no 250 yet) or between messages. The server drops a message whose client vanished
# before its reply, so the rerun must send it again.
@pytest.mark.undated
@pytest.mark.parametrize("kill_after, pause", [(1, 0.1), (4, 0.15), (7, 0.2), (9, 0.25)])
def test_kill_9_mid_batch_then_rerun_sends_each_digest_exactly_once(tmp_path, fetched, kill_after, pause):
    emails = [f"reader{n:02d}@example.org" for n in range(12)]
    with SmtpServer() as server:
        server.handler.delay = 0.3
        config = setup(tmp_path, fetched, server.port, emails)
        _run_and_kill(config, server, kill_after, pause)
        time.sleep(0.4)  # let the server finish (or drop) what it held
        killed_at = len(server.handler.received)
        assert 0 < killed_at < 12
        server.handler.delay = 0.0
        result = digest_cli("send", config=config)
        assert result.returncode == 0, result.stderr
        got = Counter(str(m["To"]) for m in server.handler.received)
        assert got == Counter(emails), got
        assert len({m["Message-ID"] for m in server.handler.received}) == 12
        final = digest_cli("send", config=config)
        assert "0 sent" in final.stdout


@pytest.mark.undated
def test_two_runs_at_once_never_send_the_same_digest(tmp_path, fetched):
    emails = [f"reader{n:02d}@example.org" for n in range(16)]
    with SmtpServer() as server:
        server.handler.delay = 0.2  # 16 messages: over 3 s of sending, so the runs overlap
        config = setup(tmp_path, fetched, server.port, emails)
        runs = [subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "send"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], results
        sent = [int(re.search(r"^(\d+) sent", out, re.M).group(1)) for out, _ in results]
        assert sum(sent) == 16 and min(sent) >= 1, sent  # both sent: they ran at the same time
        assert len(server.handler.peers) >= 2  # from two processes' connections
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)


@pytest.mark.undated
def test_sigterm_finishes_the_message_in_flight(tmp_path, fetched):
    emails = [f"reader{n:02d}@example.org" for n in range(12)]
    due = datetime.now(UTC) - timedelta(hours=1)  # the latest slot, an hour ago: due now
    with SmtpServer() as server:
        server.handler.hold_after = 2  # the third message waits at the end of DATA
        config = setup(tmp_path, fetched, server.port, emails,
                       defaults=f"  schedule: daily {due:%H}:{due:%M}\n")
        log_file = tmp_path / "run.log"
        with log_file.open("w") as log_out:
            daemon = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "run", "--no-initial-fetch",
                                       "--tick", "1"], stdout=log_out, stderr=subprocess.STDOUT)
            assert server.handler.holding.wait(timeout=60)  # two sent, the third in flight
            daemon.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60  # the daemon has taken the signal while the message is held
            while "stopping" not in log_file.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            server.handler.release.set()
            daemon.wait(timeout=60)
        log = log_file.read_text()
        assert daemon.returncode == 0, log
        assert "stopped" in log
        sent_before = len(server.handler.received)
        assert sent_before == 3  # the one in flight was finished, no other begun
        entries = Ledger(Store(load_config(config).database_url())).entries()
        assert not [e for e in entries if e.state in ("claimed", "sending", "unknown")]
        assert sum(e.state == "sent" for e in entries) == sent_before
        rest = digest_cli("send", config=config)
        assert rest.returncode == 0
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)


@pytest.mark.no_postgresql
def test_digest_demo_on_a_fresh_machine(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "digest", "demo", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "alice@example.org: sent" in result.stdout and "3 messages written to" in result.stdout
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len([f for f in files if f.endswith(".eml")]) == 3 and len([f for f in files if f.endswith(".html")]) == 3
    assert not list(tmp_path.glob("*.db"))  # the state was temporary


@pytest.mark.undated
def test_a_server_that_keeps_dropping_ends_the_run_quickly_and_loses_nothing(tmp_path, fetched):
    emails = [f"reader{n:02d}@example.org" for n in range(10)]
    with SmtpServer() as server:
        for e in emails:
            server.handler.script[e] = ["drop"] * 3
        config = setup(tmp_path, fetched, server.port, emails, smtp_extra="  retries: 1\n")
        started = time.monotonic()
        result = digest_cli("send", config=config)
        assert time.monotonic() - started < 30
        uncertain = int(re.search(r"(\d+) uncertain", result.stdout).group(1))
        assert "0 sent" in result.stdout and f"{10 - uncertain} deferred" in result.stdout
        attempts = sum(3 - len(server.handler.script[e]) for e in emails)
        assert attempts == uncertain <= 6  # three failures in a row end a pass: not 10 × 2 attempts
        for e in emails:
            server.handler.script[e] = []
        again = digest_cli("send", config=config)  # the deferred, and the uncertain once more
        assert "10 sent" in again.stdout
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)


@pytest.mark.undated
def test_about_one_commit_per_digest_sent(tmp_path, fetched):
    """A worker's ledger: one commit per digest, its `sending` mark, a statement that is its own
    transaction (it carries the previous digest's `sent`); per batch one claim, also a single
    statement, and two reads; at most two round trips to the database per digest in all."""
    import sqlalchemy as sa

    emails = [f"reader{n}@example.org" for n in range(30)]
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, emails, keywords="[model]")
        planner = delivery(config)
        planner.run(work=False)
        pending = [e for e in planner.ledger.entries() if e.state == "pending"]
        assert len(pending) == 30
        worker = delivery(config)
        counts = Counter()

        def begun(conn) -> None:  # noqa: ANN001
            options = conn.get_execution_options()
            counts.update(["alone" if options.get("digest_alone") else "read" if options.get("digest_reading")
                           else "write"])

        def statement(conn, cursor, text, *args) -> None:  # noqa: ANN001
            counts.update([] if text.startswith("BEGIN") else ["statement"])  # (SQLite's BEGIN: counted below)

        sa.event.listen(worker.store.engine, "begin", begun)
        sa.event.listen(worker.store.engine, "before_cursor_execute", statement)
        outcomes = worker.run(plan=False)
        assert [o.status for o in outcomes].count("sent") == 30 and len(server.handler.received) == 30
    assert {e.state for e in worker.ledger.entries()} == {"sent"}
    batches = -(-30 // 10)  # workers.batch
    assert counts["alone"] >= 30 + batches  # the marks and the claims, each one statement
    # Transactions with BEGIN and COMMIT: per run a recovery at the start and when nothing is left
    # to claim, the last digests' `sent`, the release, the signing key; none per digest or batch.
    assert counts["write"] <= 6, counts
    assert counts["read"] <= 4, counts
    # Round trips: per digest its mark; per batch of 10 the claim and two reads (1.3 a digest);
    # per run about 30 (a dozen statements, and the transactions above with BEGIN and COMMIT).
    round_trips = counts["statement"] + 2 * (counts["write"] + counts["read"])
    assert round_trips - 30 <= 1.4 * 30, counts


@pytest.mark.undated
@pytest.mark.parametrize("skew", [0, 1, 2])
def test_a_worker_waits_out_a_dead_workers_claims_whatever_its_clock_reads(tmp_path, fetched, skew):
    """A worker with nothing left to claim takes back what dead workers left, and waits while
    claims are under a live lease: both asked at one instant. Asked at two (the lease ending
    between them: neither taken back nor waited for), the worker ended with the claims still
    held, two digests left `claimed` (seen in CI). Here every reading of the clock is a second
    later than the one before, each skew another alignment of the lease's end with the loop."""
    emails = [f"reader{n}@example.org" for n in range(4)]
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, emails, keywords="[model]")
        planner = delivery(config)
        planner.run(work=False)
        start = datetime.now(UTC)
        held = planner.ledger.claim_batch("a-worker-since-killed", start, limit=10, planned_since=start - timedelta(hours=1),
                                          lease=timedelta(seconds=3))
        assert len(held) == 4
        readings = iter(range(skew, 10_000))
        worker = Delivery(load_config(config), Store(load_config(config).database_url()),
                          clock=lambda: start + timedelta(seconds=next(readings)))
        outcomes = worker.run(plan=False)
        assert [o.status for o in outcomes].count("sent") == 4 and len(server.handler.received) == 4
    assert {e.state for e in worker.ledger.entries()} == {"sent"}


def test_a_subscriber_paused_until_a_day_gets_nothing_before_it(tmp_path, fetched):
    from zoneinfo import ZoneInfo

    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2])
        today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()  # UTC+14: their day, not ours
        text = config.read_text(encoding="utf-8").replace(
            "  - email: reader0@example.org\n",
            f"  - email: reader0@example.org\n    timezone: Pacific/Kiritimati\n    paused_until: {today + timedelta(days=1)}\n")
        config.write_text(text, encoding="utf-8")
        result = digest_cli("send", config=config)
        assert result.returncode == 0, result.stderr
        assert [str(m["To"]) for m in server.handler.received] == ["reader1@example.org"]
        config.write_text(text.replace(f"paused_until: {today + timedelta(days=1)}", f"paused_until: {today}"),
                          encoding="utf-8")
        result = digest_cli("send", config=config)
        assert sorted(str(m["To"]) for m in server.handler.received) == ["reader0@example.org", "reader1@example.org"]
