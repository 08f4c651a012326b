"""The web side on its real server (uvicorn on loopback): what a public port meets — many
clients at once, slow and malformed requests, oversized bodies — and the headers every page
carries."""

from __future__ import annotations

import http.client
import select
import socket
import statistics
import threading
import time

import pytest

from digest.config import load_config
from digest.errors import StoreError
from digest.render.links import unsubscribe_token
from digest.store import Store, open_store
from digest.store.ledger import Ledger
from digest.web import server as web_server
from digest.web.unsubscribe import unsubscribe_server

from .conftest import fresh_database

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)


@pytest.fixture
def web(tmp_path):
    store = Store(fresh_database(tmp_path))
    secret = store.secret()
    server = unsubscribe_server("127.0.0.1:0", secret, Ledger(store))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, secret, Ledger(store)
    server.shutdown()


def fetch(server, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection(*server.server_address, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def raw(server, data: bytes, wait: float = 5) -> bytes:
    """What the server answers `data` with, up to the end of its status line."""
    with socket.create_connection(server.server_address, timeout=wait) as sock:
        try:
            sock.sendall(data)
        except OSError:  # it may answer and close before the whole of an oversized request is sent
            pass
        reply = b""
        try:
            while b"\r\n" not in reply and (chunk := sock.recv(65536)):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return reply


def test_every_page_carries_the_security_headers_and_no_server_banner(web):
    server, secret, _ = web
    status, headers, page = fetch(server, "GET", f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}")
    assert status == 200 and "Stop sending" in page and 'href="/static/site.css"' in page
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers
    status, headers, css = fetch(server, "GET", "/static/site.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and "font" in css
    status, headers, page = fetch(server, "GET", "/nothing-here")
    assert status == 404 and "Page not found" in page and "referrer-policy" in headers
    status, _, _ = fetch(server, "DELETE", f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}")
    assert status == 405


def test_a_head_request_is_answered_as_a_get_and_unsubscribes_nobody(web):
    """Link checkers and mail scanners send HEAD too: the page's headers, no body, no action."""
    server, secret, ledger = web
    path = f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}"
    status, headers, body = fetch(server, "HEAD", path)
    assert status == 200 and body == "" and headers["content-type"].startswith("text/html")
    assert "referrer-policy" in headers
    assert ledger.state("a@example.org").active
    status, _, page = fetch(server, "GET", path)
    assert status == 200 and "Stop sending" in page  # still asked, not "already unsubscribed"


def test_a_trailing_slash_redirects_within_the_site_whatever_the_host_header_says(web):
    server, secret, _ = web
    path = f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}"
    status, headers, _ = fetch(server, "GET", path + "/?x=1", headers={"Host": "evil.example"})
    assert status == 307 and headers["location"] == path + "?x=1"  # relative: no host of the request's
    for sneaky in ("//evil.example/", "/\\evil.example/", "/%2F%2Fevil.example/"):
        status, headers, _ = fetch(server, "GET", sneaky)
        assert status == 307 and headers["location"].startswith("/") and not headers["location"].startswith("//"), \
            headers["location"]
        assert "\\" not in headers["location"]
    assert fetch(server, "GET", path + "/", headers={"Host": "evil.example"})[0] == 307


def test_a_health_check_says_whether_the_database_answers(web, monkeypatch):
    server, _, ledger = web
    status, headers, body = fetch(server, "GET", "/healthz")
    assert status == 200 and body == "ok\n" and "referrer-policy" in headers

    def down() -> None:
        raise StoreError("state database: OperationalError: connection refused")

    monkeypatch.setattr(ledger.store, "ping", down)
    assert fetch(server, "GET", "/healthz")[0] == 503


def test_malformed_and_oversized_requests_get_a_4xx_and_change_nothing(web):
    server, secret, ledger = web
    path = f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}".encode()
    reply = raw(server, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    reply = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 4"), reply[:100]
    status, _, _ = fetch(server, "POST", path.decode(), body=b"List-Unsubscribe=One-Click" + b"&x=" + b"y" * 100_000,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413
    assert ledger.state("a@example.org").active  # none of them unsubscribed anyone


def test_slow_partial_requests_time_out_and_others_are_still_answered(web, monkeypatch):
    server, secret, _ = web
    monkeypatch.setattr(web_server, "HEADER_TIMEOUT", 1.0)  # read when each connection is made
    slow = []
    for _ in range(100):
        sock = socket.create_connection(server.server_address, timeout=10)
        sock.sendall(b"GET /unsubscribe/x HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        slow.append(sock)
    try:
        started = time.monotonic()
        status, _, _ = fetch(server, "GET", f"/unsubscribe/{unsubscribe_token(secret, 'b@example.org')}")
        assert status == 200 and time.monotonic() - started < 1  # answered while the slow ones wait
        open_ones, deadline = list(slow), time.monotonic() + 6
        while open_ones and time.monotonic() < deadline:
            readable, _, _ = select.select(open_ones, [], [], 0.2)
            for sock in readable:
                try:
                    ended = sock.recv(1) == b""  # the server closed it
                except ConnectionResetError:
                    ended = True
                if ended:
                    open_ones.remove(sock)
        assert not open_ones, f"{len(open_ones)} slow connections still open"
    finally:
        for sock in slow:
            sock.close()


def test_a_body_that_never_arrives_whole_is_answered_408_and_closed_quietly(web, monkeypatch, caplog):
    """Content-Length 60,000 and one byte sent: the connection no longer stays open for ever;
    a client that leaves mid-body leaves no traceback in the log."""
    from digest.web import app as web_app

    server, secret, ledger = web
    monkeypatch.setattr(web_app, "BODY_TIMEOUT", 1.0)
    path = f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}".encode()
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" \
        b"Content-Length: 60000\r\n\r\nL"
    started = time.monotonic()
    with socket.create_connection(server.server_address, timeout=10) as sock:
        sock.sendall(head)
        reply = b""
        while chunk := sock.recv(65536):  # to the server's close
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5, reply[:100]
    with caplog.at_level("DEBUG"):
        with socket.create_connection(server.server_address, timeout=10) as sock:
            sock.sendall(head)
        time.sleep(0.5)  # gone: the server meets the end of the stream
    assert not [r for r in caplog.records if r.levelno >= 30], [r.getMessage() for r in caplog.records]
    assert ledger.state("a@example.org").active


def test_past_the_connection_limit_a_request_gets_503_at_once(tmp_path, monkeypatch):
    store = Store(fresh_database(tmp_path))
    monkeypatch.setattr(web_server, "MAX_CONCURRENT", 5)
    server = unsubscribe_server("127.0.0.1:0", store.secret(), Ledger(store))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    idle = [socket.create_connection(server.server_address, timeout=10) for _ in range(5)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        status, _, _ = fetch(server, "GET", "/static/site.css")
        assert status == 503 and time.monotonic() - started < 2
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        assert fetch(server, "GET", "/static/site.css")[0] == 200
    finally:
        server.shutdown()


def load(server, method: str, paths: list[str], at_once: int, body: str = "") -> list[tuple[object, float]]:
    """The requests from clients in a process of their own (tests/load_client.py)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    client = Path(__file__).with_name("load_client.py")
    done = subprocess.run([sys.executable, str(client), *map(str, server.server_address[:2]), method, str(at_once), body],
                          input=json.dumps(paths), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [(status, seconds) for status, seconds in json.loads(done.stdout)]


def percentiles(results: list[tuple[object, float]]) -> tuple[float, float]:
    latencies = sorted(seconds for _, seconds in results)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]


def test_two_hundred_one_click_unsubscribes_at_once_and_two_thousand_page_loads(web):
    server, secret, ledger = web
    people = [f"p{n}@example.org" for n in range(200)]
    results = load(server, "POST", [f"/unsubscribe/{unsubscribe_token(secret, e)}" for e in people], 200,
                   "List-Unsubscribe=One-Click")
    assert [status for status, _ in results] == [200] * len(people)
    p50, p95 = percentiles(results)
    assert p95 < 1.0, f"one-click: p50 {p50:.3f} s, p95 {p95:.3f} s"
    assert not any(state.active for state in ledger.states(people).values())

    readers = [f"r{n}@example.org" for n in range(2000)]
    results = load(server, "GET", [f"/unsubscribe/{unsubscribe_token(secret, e)}" for e in readers], 200)
    assert {status for status, _ in results} == {200}
    p50, p95 = percentiles(results)
    assert p95 < 1.0, f"pages: p50 {p50:.3f} s, p95 {p95:.3f} s"


@pytest.mark.no_postgresql
def test_a_port_in_use_is_a_clear_error():
    from digest.errors import DigestError

    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(DigestError, match="cannot listen on 127.0.0.1:"):
            unsubscribe_server(f"127.0.0.1:{taken.getsockname()[1]}", "secret", None)  # type: ignore[arg-type]


def test_digest_serve_answers_the_links_alone_and_stops_on_sigterm(tmp_path):
    import re
    import signal
    import subprocess
    import sys

    from .test_deliver import write

    config = write(tmp_path, 25, ["a@example.org"], extra="listen: 127.0.0.1:0\nsignups:\n  open: true\n",
                   state=fresh_database(tmp_path))
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "serve"], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline, found = time.monotonic() + 60, None
        while found is None and time.monotonic() < deadline and process.poll() is None:
            found = re.search(r"links answered on http://127\.0\.0\.1:(\d+)/", log.read_text())
            time.sleep(0.1)
        assert found, log.read_text()
        secret = open_store(load_config(config)).signing_secret()
        connection = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
        connection.request("GET", f"/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}")
        assert connection.getresponse().status == 200
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
        connection.request("GET", "/subscribe")  # the subscription centre too
        response = connection.getresponse()
        assert response.status == 200 and 'name="email"' in response.read().decode()
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0 and "Traceback" not in log.read_text()

    without = write(tmp_path, 25, ["a@example.org"], state=fresh_database(tmp_path, "other.db"))
    result = subprocess.run([sys.executable, "-m", "digest", "-c", str(without), "serve"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "listen" in result.stderr and "Traceback" not in result.stderr
