"""The subscription centre under load, on its real server (uvicorn on loopback), with the
clients in a process of their own (tests/load_client.py) and a real SMTP server: 200 sign-ups
at once, 2,000 manage-page loads (each with its preview of the day's real papers), and a
flood from one client. No 5xx, no "database is locked"; the figures go to
test-artifacts/centre-load.json (the note quotes them)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest

from digest.config import Subscriber
from digest.deliver import roster

from .smtp_server import SmtpServer
from .test_centre import Browser, serve_centre
from .test_web import load, percentiles

pytestmark = [pytest.mark.database]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def record(name: str, results: list[tuple[object, float]]) -> dict:
    p50, p95 = percentiles(results)
    figures = {"requests": len(results), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
               "statuses": {str(s): sum(1 for r, _ in results if r == s) for s in {r for r, _ in results}}}
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "centre-load.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known[name] = figures
    path.write_text(json.dumps(known, indent=2))
    return figures


def serve(tmp_path, smtp, per_client: int, *, papers: bool = False):  # noqa: ANN201
    return serve_centre(tmp_path, smtp, f"  per_client: {per_client}\n  per_hour: 5000\n", papers=papers)


def signups(server, count: int) -> list[list]:
    """`count` sign-up requests of one browser (its CSRF cookie and token), each a new address."""
    host, port = server.server_address[:2]
    visitor = Browser(f"http://{host}:{port}")
    hidden = visitor.form("/subscribe")
    cookie = "; ".join(f"{c.name}={c.value}" for c in visitor.jar)
    return [["/subscribe", urlencode({**hidden, "email": f"load{n}@example.org", "preset": "Language models",
                                      "schedule_kind": "daily", "schedule_time": "07:30", "timezone": "UTC",
                                      "max_papers": "10"}), {"Cookie": cookie}] for n in range(count)]


def test_two_hundred_sign_ups_at_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    with SmtpServer() as smtp:
        server, _, store, _ = serve(tmp_path, smtp, per_client=1000)
        try:
            results = load(server, "POST", signups(server, 200), 200)
            smtp.wait_for(200, timeout=60)
        finally:
            server.shutdown()
    figures = record("200 sign-ups at once", results)
    assert [status for status, _ in results] == [200] * 200, figures
    assert len(smtp.handler.received) == 200 and len({str(m["To"]) for m in smtp.handler.received}) == 200
    assert "database is locked" not in caplog.text and "Traceback" not in caplog.text


def test_a_flood_from_one_client_is_refused_not_queued(tmp_path):
    with SmtpServer() as smtp:
        server, centre, store, _ = serve(tmp_path, smtp, per_client=30)
        try:
            results = load(server, "POST", signups(server, 200), 200)
            smtp.wait_for(30, timeout=30)
        finally:
            server.shutdown()
    figures = record("a flood of 200 sign-ups from one client (30 an hour allowed)", results)
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 30 and statuses.count(429) == 170, figures
    assert len(smtp.handler.received) == 30  # at most what was allowed, nothing queued


def test_two_thousand_manage_page_loads(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    with SmtpServer() as smtp:
        server, centre, store, config = serve(tmp_path, smtp, per_client=1000, papers=True)
        try:
            people = [Subscriber.model_validate({"email": f"m{n}@example.org", "topics": [
                {"name": "Mine", "keywords": [["language model", "diffusion", "agent", "robot"][n % 4]]}]})
                for n in range(200)]
            now = centre.clock()
            centre.directory.put("self", [roster.as_wanted(config, p) for p in people], now,
                                 lambda schedule, timezone: roster.first_due(schedule, timezone, now))
            pages = [centre.manage_url(p.email).split("digest.example.org", 1)[1] for p in people] * 10
            results = load(server, "GET", pages, 100)
            host, port = server.server_address[:2]
            page = Browser(f"http://{host}:{port}").get(pages[0])[1]
        finally:
            server.shutdown()
    figures = record("2,000 manage-page loads, 100 at a time", results)
    assert {status for status, _ in results} == {200}, figures
    assert re.search(r"would have had <b>\d+ papers?</b>", page)  # each with its preview of real papers
    assert "database is locked" not in caplog.text and "Traceback" not in caplog.text
