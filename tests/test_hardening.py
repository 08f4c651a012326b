"""Attacks on a running installation (issue 10): hostile feeds, poisoned rows, and the
product still gathering, matching and sending for everyone else."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from digest.config import load_config
from digest.store import Ledger, Store

from .conftest import REALWORLD, Reply, write_config
from .smtp_server import SmtpServer
from .test_cli import digest
from .test_deliver import fetched_db, setup  # noqa: F401 - the fixture

pytestmark = pytest.mark.clock

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
    listed = json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)
    by_title = {p["title"]: p for p in listed}
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
