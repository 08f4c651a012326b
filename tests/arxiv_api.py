"""A loopback arXiv API (export.arxiv.org/api/query) for the fetch-by-id path: real HTTP on
127.0.0.1 answering `id_list` queries with the real entries of the captures in
tests/data/realworld/, in arXiv's own shape (tests/data/arxiv-api-id-list.xml): the ids it
does not know left out, the others newest first. Scripted failures (a 503, say) come first."""

from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .conftest import REALWORLD

CAPTURES = ("arxiv-api-query-testing-100.xml", "arxiv-api-query-transformer.xml")
_HEAD = """<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">
  <id>https://arxiv.org/api/loopback</id>
  <title>arXiv Query: search_query=&amp;id_list={ids}&amp;start=0&amp;max_results={count}</title>
  <updated>2026-06-14T02:30:47Z</updated>
  <link href="https://arxiv.org/api/query?search_query=&amp;start=0&amp;max_results={count}&amp;id_list={ids}" type="application/atom+xml"/>
  <opensearch:itemsPerPage>{count}</opensearch:itemsPerPage>
  <opensearch:totalResults>{found}</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
"""


def captured_entries() -> dict[str, str]:
    """arXiv id (without version) → its <entry> element as captured."""
    entries: dict[str, str] = {}
    for name in CAPTURES:
        text = (REALWORLD / name).read_text(encoding="utf-8")
        for entry in re.findall(r"  <entry>.*?</entry>\n", text, re.S):
            found = re.search(r"<id>http://arxiv\.org/abs/(.+?)v\d+</id>", entry)
            assert found, entry[:200]
            entries[found.group(1)] = entry
    return entries


def closed_port() -> int:
    """A loopback port nothing listens on (a network that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ArxivApi:
    """Serves /api/query; `failures`: statuses answered first, one per request; `asked`: the
    ids of each request; `times`: when each came (time.monotonic())."""

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        self.entries = entries if entries is not None else captured_entries()
        self.failures: list[int] = []
        self.delay = 0.0  # seconds before each answer (a slow arXiv)
        self.asked: list[list[str]] = []
        self.times: list[float] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                ids = [i for i in (parse_qs(parts.query).get("id_list") or [""])[0].split(",") if i]
                api.asked.append(ids)
                api.times.append(time.monotonic())
                time.sleep(api.delay)
                if parts.path != "/api/query":
                    return self._answer(404, b"not found")
                if api.failures:
                    return self._answer(api.failures.pop(0), b"Service Unavailable", {"Retry-After": "0"})
                found = sorted((i for i in ids if i in api.entries), reverse=True)
                body = _HEAD.format(ids=",".join(ids), count=len(ids), found=len(found))
                body += "".join(api.entries[i] for i in found) + "</feed>\n"
                self._answer(200, body.encode("utf-8"), {"Content-Type": "application/atom+xml; charset=UTF-8"})

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/query"

    def __enter__(self) -> ArxivApi:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
