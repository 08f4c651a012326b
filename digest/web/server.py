"""Listening for HTTP: the web app on uvicorn, in a thread of its own; a port in use is the
user's to fix, not a bug.

uvicorn (asyncio) holds thousands of connections without a thread each: a slow or idle client
costs a socket, not a worker. It is configured for a public port behind a proxy: a real
accept backlog, idle keep-alive connections closed after a few seconds, a request line and
headers of at most 16 KB, malformed requests answered with 400 by its parser, no server
banner, requests whose headers are not complete within `HEADER_TIMEOUT` closed (uvicorn
has no such limit of its own; see `_SlowHeaders`), bodies within `BODY_TIMEOUT` (web/app.py), and
past MAX_CONCURRENT connections and requests at once, 503 at once rather than a queue that
grows until the process runs out of file descriptors."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import DigestError

BACKLOG = 2048
KEEP_ALIVE = 5  # seconds an idle connection stays open
HEADER_TIMEOUT = 10.0  # seconds from a connection (or its previous response) to a complete request head
MAX_HEAD = 16 * 1024
MAX_CONCURRENT = 1000  # connections (and requests being answered) at once; then 503


def http_server(host: str, port: int, handler: type[BaseHTTPRequestHandler], *, hint: str) -> ThreadingHTTPServer:
    """A local server on host:port (the template author's preview, on 127.0.0.1)."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise DigestError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint) from None


class _SlowHeaders(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head has not arrived
    whole within HEADER_TIMEOUT (a slow-loris client would otherwise hold it for ever)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._timed_cycle = self.cycle  # the request before the one awaited (None on a new connection)
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is self._timed_cycle:  # the awaited request's head never arrived whole
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_timer is not None and self.cycle is not self._timed_cycle:  # a new request's head arrived
            self._head_timer.cancel()
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_timer is None and not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same time

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)


class WebServer:
    """An ASGI app on host:port. The socket is bound at once (a port in use stops the command
    before anything runs); `serve_forever` serves until `shutdown`."""

    def __init__(self, app: Any, address: str, *, hint: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.socket = socket.create_server((host, int(port)), family=family, backlog=BACKLOG)
        except (OSError, ValueError) as exc:
            raise DigestError(f"cannot listen on {address}: {getattr(exc, 'strerror', None) or exc}", hint=hint) from None
        self.server_address = self.socket.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(
            app, http=_SlowHeaders, lifespan="off", log_level="warning", access_log=False, server_header=False,
            backlog=BACKLOG, timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=MAX_HEAD,
            limit_concurrency=MAX_CONCURRENT,
            timeout_graceful_shutdown=5))
        self.stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.stopped.wait(timeout=10)
        self.socket.close()
