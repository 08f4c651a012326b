"""Real HTTP on loopback: conditional GET, retries, Retry-After, timeouts, limits, bad documents."""

from __future__ import annotations

import gzip
import os
import socket
import time

import pytest
import urllib3

from digest import load_config
from digest.errors import FetchError
from digest.gather import gather
from digest.gather.http import Fetcher
from digest.models import Validators
from digest.store import Store

from .conftest import Reply, realworld, write_config

pytestmark = pytest.mark.database  # on PostgreSQL too (.ci/run)

RSS = realworld("arxiv-rss-cs.CL-2026-04-27.xml")


def fast_fetcher(**kw) -> Fetcher:
    return Fetcher(retries=kw.pop("retries", 2), backoff=kw.pop("backoff", 0.01), **kw)


@pytest.mark.no_postgresql
def test_sends_user_agent_and_keeps_validators(feed_server):
    url = feed_server.serve("/rss", Reply(200, RSS, {"ETag": '"v1"', "Last-Modified": "Mon, 27 Apr 2026 04:00:02 GMT"}))
    doc = fast_fetcher().get("s", url)
    assert doc.body == RSS
    assert doc.validators == Validators('"v1"', "Mon, 27 Apr 2026 04:00:02 GMT")
    assert feed_server.hits("/rss")[0]["User-Agent"].startswith("paper-digest/")


@pytest.mark.no_postgresql
def test_a_proxy_in_the_environment_carries_the_requests(feed_server, monkeypatch):
    """A lab's network reaches the web through a proxy: $http_proxy / $https_proxy, minus
    $no_proxy and loopback. The feed server stands in for the proxy (it is asked for the
    absolute URL)."""
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    feed_server.routes["http://feeds.example.org/rss"] = [Reply(200, RSS)]
    monkeypatch.setenv("http_proxy", feed_server.url(""))
    assert fast_fetcher().get("s", "http://feeds.example.org/rss").body == RSS
    assert feed_server.requests[-1][0] == "http://feeds.example.org/rss"
    direct = feed_server.serve("/direct", Reply(200, b"x"))  # loopback: never through the proxy
    assert fast_fetcher().get("s", direct).body == b"x" and feed_server.requests[-1][0] == "/direct"
    monkeypatch.setenv("no_proxy", "example.org")
    asked = len(feed_server.requests)
    with pytest.raises(FetchError, match="cannot reach http://feeds.example.org/rss"):
        fast_fetcher(retries=0).get("s", "http://feeds.example.org/rss", timeout=2)
    assert len(feed_server.requests) == asked  # straight to the host, which is not there
    monkeypatch.delenv("no_proxy")
    monkeypatch.setenv("http_proxy", "http://[not a proxy")
    with pytest.raises(FetchError, match=r"\$http_proxy is not a proxy URL"):
        fast_fetcher().get("s", "http://feeds.example.org/rss")


def test_conditional_get_costs_a_304(feed_server, tmp_path):
    def conditional(headers_seen):
        return headers_seen.get("If-None-Match") == '"v1"'

    feed_server.serve("/rss", Reply(200, RSS, {"ETag": '"v1"'}), Reply(304, b"", {"ETag": '"v1"'}))
    path = write_config(tmp_path, [{"name": "cl", "type": "arxiv", "categories": ["cs.CL"],
                                    "url": feed_server.url("/rss")}])
    config = load_config(path)
    store = Store(config.database_url())
    first = gather(config, store, fetcher=fast_fetcher())
    second = gather(config, store, fetcher=fast_fetcher())
    assert (first[0].fetched, first[0].new) == (3, 3)
    assert second[0].not_modified and second[0].new == 0
    hits = feed_server.hits("/rss")
    assert "If-None-Match" not in hits[0] and conditional(hits[1])


@pytest.mark.no_postgresql
def test_retries_429_honouring_retry_after(feed_server):
    url = feed_server.serve("/rss", Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, RSS))
    start = time.monotonic()
    doc = fast_fetcher().get("s", url)
    waited = time.monotonic() - start
    assert doc.body == RSS
    assert len(feed_server.hits("/rss")) == 2
    assert waited >= 0.9, "Retry-After: 1 must be honoured"


@pytest.mark.no_postgresql
def test_retry_after_is_capped(feed_server):
    url = feed_server.serve("/rss", Reply(503, b"", {"Retry-After": "3600"}), Reply(200, RSS))
    fast_fetcher(max_retry_after=0.2).get("s", url)
    first, second = (t for _, _, t in feed_server.requests)
    assert 0.19 <= second - first < 60  # the cap, not the hour asked for


@pytest.mark.no_postgresql
@pytest.mark.parametrize("asked, waited", [("3600", 120), ("30", 30), ("0", 0)])
def test_retry_after_default_cap_is_two_minutes(asked, waited):
    # The README promises "honouring Retry-After (capped at 2 minutes)" at the defaults.
    response = urllib3.HTTPResponse(body=b"", headers={"Retry-After": asked}, status=503)
    assert Fetcher().retry_policy().get_retry_after(response) == waited


@pytest.mark.no_postgresql
def test_persistent_500_is_a_clear_error_after_retries(feed_server):
    url = feed_server.serve("/rss", Reply(500, b"boom"))
    with pytest.raises(FetchError, match=r"HTTP 500 .*retried already"):
        fast_fetcher(retries=2).get("s", url)
    assert len(feed_server.hits("/rss")) == 3


@pytest.mark.no_postgresql
def test_404_names_the_address(feed_server):
    url = feed_server.url("/missing")
    with pytest.raises(FetchError, match=r"s: HTTP 404 .*/missing.*check the url"):
        fast_fetcher().get("s", url)
    assert len(feed_server.hits("/missing")) == 1, "a 404 is not retried"


@pytest.mark.no_postgresql
@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml"])
def test_a_redirect_away_from_the_web_is_refused_and_said(feed_server, location):
    url = feed_server.serve("/moved", Reply(302, b"", {"Location": location}))
    with pytest.raises(FetchError, match="it sent a redirect to something that is not an http.s. address"):
        fast_fetcher().get("s", url)


@pytest.mark.no_postgresql
def test_a_local_source_that_is_no_file_is_refused_at_once_and_a_big_one_by_its_size(tmp_path):
    """`url: /dev/zero` read until the machine ran out of memory (its size says 0), and a pipe
    waited for a writer for ever."""
    os.mkfifo(tmp_path / "pipe")
    for path in ("/dev/zero", str(tmp_path / "pipe")):
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"^s: .* is not a file \(a device, a pipe or a socket\)"):
            fast_fetcher().get("s", path)
        assert time.monotonic() - started < 5
    (tmp_path / "big.xml").write_bytes(b"<rss>" + b" " * 2_000)
    with pytest.raises(FetchError, match=r"^s: \S+big.xml is 2,005 bytes, over 1,000 \(max_bytes\)"):
        fast_fetcher().get("s", str(tmp_path / "big.xml"), max_bytes=1_000)


@pytest.mark.no_postgresql
def test_hanging_server_times_out(feed_server):
    url = feed_server.serve("/slow", Reply(200, RSS, delay=60))
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fast_fetcher(retries=0).get("s", url, timeout=0.5)
    assert time.monotonic() - start < 30  # the time-out, not the server's minute


@pytest.mark.no_postgresql
def test_size_limit(feed_server):
    url = feed_server.serve("/big", Reply(200, b"x" * 5000))
    with pytest.raises(FetchError, match="max_bytes"):
        fast_fetcher().get("s", url, max_bytes=1000)


@pytest.mark.no_postgresql
def test_size_limit_applies_to_decompressed_body(feed_server):
    bomb = gzip.compress(b"<rss>" + b" " * 200_000 + b"</rss>")
    url = feed_server.serve("/gz", Reply(200, bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(FetchError, match="max_bytes"):
        fast_fetcher().get("s", url, max_bytes=50_000)


@pytest.mark.no_postgresql
def test_gzip_is_decoded(feed_server):
    url = feed_server.serve("/gz", Reply(200, gzip.compress(RSS), {"Content-Encoding": "gzip"}))
    assert fast_fetcher().get("s", url).body == RSS


@pytest.mark.no_postgresql
def test_connection_refused_is_one_line():
    with socket.socket() as closed:  # bound, never listening: refused, and no one else can take it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(FetchError, match="cannot reach .*connection refused") as info:
            fast_fetcher(retries=0).get("s", f"http://127.0.0.1:{port}/feed")
    assert "\n" not in str(info.value)


@pytest.mark.no_postgresql
def test_minimum_interval_between_requests_to_one_host(feed_server):
    url = feed_server.serve("/api", Reply(200, realworld("arxiv-api-query-transformer.xml")))
    fetcher = fast_fetcher()
    for _ in range(3):
        fetcher.get("api", url, min_interval=0.4)
    times = [t for p, _, t in feed_server.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= 0.38 for gap in gaps), gaps


def test_broken_sources_never_stop_the_others(feed_server, tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"")
    sources = [
        {"name": "good", "type": "arxiv", "categories": ["cs.CL"], "url": feed_server.serve("/ok", Reply(200, RSS))},
        {"name": "malformed", "type": "feed", "url": feed_server.serve("/bad", Reply(200, b"<rss><channel><item><title>x"))},
        {"name": "html", "type": "feed", "url": feed_server.serve("/html", Reply(200, b"<!DOCTYPE html><html><body>hi</body></html>"))},
        {"name": "empty", "type": "feed", "url": "empty.xml"},
        {"name": "missing", "type": "feed", "url": "does-not-exist.xml"},
        {"name": "notfound", "type": "feed", "url": feed_server.url("/nope")},
        {"name": "server-error", "type": "feed", "url": feed_server.serve("/500", Reply(500, b""))},
        {"name": "hanging", "type": "feed", "url": feed_server.serve("/hang", Reply(200, RSS, delay=3)), "timeout": 0.5},
        {"name": "badjson", "type": "huggingface", "url": feed_server.serve("/json", Reply(200, b"[{"))},
    ]
    config = load_config(write_config(tmp_path, sources))
    reports = {r.source: r for r in gather(config, Store(config.database_url()), fetcher=fast_fetcher(retries=0))}
    assert reports["good"].ok and reports["good"].new == 3
    expected = {
        "malformed": "not a valid RSS or Atom document",
        "html": "HTML page, not an RSS or Atom feed",
        "empty": "empty",
        "missing": "file not found",
        "notfound": "HTTP 404",
        "server-error": "HTTP 500",
        "hanging": "timed out",
        "badjson": "not valid JSON at line 1",
    }
    for name, fragment in expected.items():
        assert not reports[name].ok, name
        assert fragment in reports[name].error, (name, reports[name].error)
        assert "\n" not in reports[name].error


def test_arxiv_api_sources_are_three_seconds_apart_by_default(feed_server, tmp_path):
    # The README: "an arXiv API search … at most one request per 3 s", at the default interval.
    body = realworld("arxiv-api-query-transformer.xml")
    sources = [{"name": f"api-{n}", "type": "arxiv-api", "url": feed_server.serve(f"/api/{n}", Reply(200, body))}
               for n in range(3)]
    config = load_config(write_config(tmp_path, sources))
    reports = gather(config, Store(config.database_url()))
    assert all(r.ok for r in reports)
    times = sorted(t for _, _, t in feed_server.requests)
    assert len(times) == 3 and all(b - a >= 2.95 for a, b in zip(times, times[1:])), times
