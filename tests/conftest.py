"""Shared fixtures: a real HTTP server on loopback whose answers each test scripts."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# The cache of pure results (compiled templates, sentence vectors: digest/kept.py) of this
# session's own, not the user's: every process the tests start shares it, and it goes when
# they end; or DIGEST_TEST_CACHE's, kept, which .ci/run's passes share (each paper's vector is
# then encoded once for all of them: the results are keyed by what they are made from).
if os.environ.get("DIGEST_TEST_CACHE"):
    os.environ["XDG_CACHE_HOME"] = _CACHE = os.environ["DIGEST_TEST_CACHE"]
    os.makedirs(_CACHE, exist_ok=True)
else:
    os.environ["XDG_CACHE_HOME"] = _CACHE = tempfile.mkdtemp(prefix="digest-test-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
# Sessions start with the sentence vectors of the test data's papers and topics made before
# (tests/data/vectors.sqlite3: the same model and texts give the same keys), not by encoding
# some 1,300 texts again (a minute of CPU); a text not among them is encoded as usual.
_VECTORS = Path(_CACHE) / "paper-digest" / "vectors.sqlite3"
if not _VECTORS.exists():
    _VECTORS.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).parent / "data" / "vectors.sqlite3", f"{_VECTORS}.{os.getpid()}")
    os.replace(f"{_VECTORS}.{os.getpid()}", _VECTORS)

DATA = Path(__file__).parent / "data"
REALWORLD = DATA / "realworld"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hanging server)
    drip: float = 0.0  # seconds between bytes of the body (a slow-drip server), 0: all at once


class FeedServer:
    """Serves scripted replies per path; the last reply of a path repeats. Records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, dict[str, str], float]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                server.requests.append((self.path, dict(self.headers), time.monotonic()))
                replies = server.routes.get(path) or [Reply(404, b"not found")]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if "Content-Length" not in reply.headers:
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.drip:
                        for byte in reply.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def serve(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.url(path)

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers, _ in self.requests if p.split("?")[0] == path]


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


# ---------------------------------------------------------------- which database the tests use

DATABASE = os.environ.get("DIGEST_TEST_DATABASE", "sqlite")  # sqlite | postgresql: .ci/run runs both
_postgres = None


sqlite_only = pytest.mark.skipif(DATABASE == "postgresql", reason="about SQLite's own file (runs in the SQLite pass)")


def postgres_server():  # noqa: ANN201
    """The tests' own PostgreSQL server, started on first use, stopped at exit."""
    global _postgres
    if _postgres is None:
        from .postgres import Postgres, available

        why = available()
        if why:
            pytest.skip(why)
        _postgres = Postgres().start()
        atexit.register(_postgres.stop)
    return _postgres


def fresh_database(directory: Path, name: str = "state.db") -> str:
    """An empty database of the backend under test: its URL."""
    if DATABASE == "postgresql":
        return postgres_server().create_database()
    return f"sqlite:///{directory / name}"


@dataclass(frozen=True)
class Template:
    """A database prepared once (the samples fetched, say) and copied for each test: a SQLite
    file, or a PostgreSQL database used as a template."""

    url: str

    def copy(self, directory: Path) -> str:
        """A copy of its own for one test; the URL to write in `state:`."""
        if self.url.startswith("sqlite:///"):
            shutil.copy(self.url.removeprefix("sqlite:///"), directory / "digest.db")
            return f"sqlite:///{directory / 'digest.db'}"
        return postgres_server().create_database(template=self.url.rsplit("/", 1)[1])


def realworld(name: str) -> bytes:
    return (REALWORLD / name).read_bytes()


def write_config(directory: Path, sources: list[dict], *, extra: str = "", state: str | None = None) -> Path:
    """A minimal valid config with these sources, written as YAML into `directory` (with
    `state`, the database's URL; by default a fresh database of the backend under test:
    digest.db beside it with SQLite)."""
    import json

    backend = fresh_database(directory) if state is None and DATABASE == "postgresql" else None

    lines = ['sender:', '  from: "Paper Digest <digest@example.org>"', *([f"state: {state}"] if state else []),
             "sources:"]
    lines += [f"  - {json.dumps(source)}" for source in sources] or ["  []"]
    lines += ["subscribers:", "  - email: alice@example.org",
              extra or "    topics: [{name: Language models, keywords: [language model, LLM]}]"]
    lines += [f"state: {backend}"] if backend else []  # last: the lines tests point at stay where they are
    path = directory / "subscribers.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
