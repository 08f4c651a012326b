"""Listening for HTTP: a port in use is the user's to fix, not a bug."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import DigestError


def http_server(host: str, port: int, handler: type[BaseHTTPRequestHandler], *, hint: str) -> ThreadingHTTPServer:
    """A server on host:port; a port in use (or not allowed) is the user's to fix, not a bug."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise DigestError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint) from None
