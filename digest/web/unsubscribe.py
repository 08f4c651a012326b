"""The unsubscribe endpoint `digest run` serves when `listen:` is set (put it behind the
web server that answers for `base_url`).

GET /unsubscribe/<token> shows a confirmation button (link scanners fetch links with GET,
and must not unsubscribe anyone); POST to the same URL — the button, or a mail client's
one-click request (RFC 8058, body `List-Unsubscribe=One-Click`) — unsubscribes at once.
The token is the subscriber's address signed with the installation's key: it cannot be
made for another address."""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..render.links import email_from_token
from ..store.ledger import Ledger
from .server import http_server

log = logging.getLogger("digest.web")

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width, initial-scale=1"><title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;
max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2328}}button{{font:inherit;padding:.5rem 1rem}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


def make_handler(secret: str, ledger: Ledger) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _token(self) -> str | None:
            path = urlsplit(self.path).path
            return path[len("/unsubscribe/"):] if path.startswith("/unsubscribe/") else None

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            token = self._token()
            email = email_from_token(secret, token) if token else None
            if email is None:
                return self._page(404 if token is None else 400, "Link not valid",
                                  "<p>This unsubscribe link is not valid. Reply to the digest e-mail instead.</p>")
            since = ledger.state(email).unsubscribed_at
            if since is not None:  # a second visit: say so, never ask again
                return self._unsubscribed(email, since, already=True)
            self._page(200, "Unsubscribe", f"<p>Stop sending paper digests to <b>{html.escape(email)}</b>?</p>"
                       f'<form method="post"><button type="submit">Unsubscribe</button></form>')

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(min(length, 4096)).decode("utf-8", "replace"))
            token = self._token()
            email = email_from_token(secret, token) if token else None
            if email is None:
                return self._page(400, "Link not valid", "<p>This unsubscribe link is not valid.</p>")
            if form.get("action") == ["resubscribe"]:
                ledger.resubscribe(email)
                log.info("resubscribed %s", email)
                return self._page(200, "Subscribed again", f"<p><b>{html.escape(email)}</b> will get paper digests "
                                  "again, from the next one on.</p>")
            # The button, or a mail client's one-click request (RFC 8058: List-Unsubscribe=One-Click).
            state = ledger.state(email)
            if state.unsubscribed_at is not None:
                return self._unsubscribed(email, state.unsubscribed_at, already=True)
            now = datetime.now(UTC)
            ledger.unsubscribe(email, now)
            log.info("unsubscribed %s", email)
            self._unsubscribed(email, now, already=False)

        def _unsubscribed(self, email: str, since: datetime, *, already: bool) -> None:
            when = f" since {since:%Y-%m-%d}" if already else ""
            self._page(200, "Already unsubscribed" if already else "Unsubscribed",
                       f"<p><b>{html.escape(email)}</b> is unsubscribed{when}: it will get no more paper digests.</p>"
                       '<form method="post"><input type="hidden" name="action" value="resubscribe">'
                       "<button type=\"submit\">Resubscribe</button></form>")

        def _page(self, status: int, title: str, body: str) -> None:
            data = _PAGE.format(title=title, body=body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def unsubscribe_server(address: str, secret: str, ledger: Ledger) -> ThreadingHTTPServer:
    host, _, port = address.rpartition(":")
    return http_server(host or "127.0.0.1", int(port), make_handler(secret, ledger), hint="change `listen:`")
