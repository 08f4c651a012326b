"""The web side as one ASGI application (Starlette), served by uvicorn (web/server.py).

Today it answers the links in every digest: GET /unsubscribe/<token> shows a confirmation
button (link scanners fetch links with GET, and must not unsubscribe anyone); POST to the same
URL — the button, or a mail client's one-click request (RFC 8058, body
`List-Unsubscribe=One-Click`) — unsubscribes at once; `action=resubscribe` undoes it. The token
is the subscriber's address sealed with the installation's key: it cannot be made for another
address, and no address can be read from it.

With the subscription centre come its pages (web/centre.py) and, when DIGEST_ADMIN_PASSWORD is
set, the admin page /admin (web/admin.py: basic auth, to be used over HTTPS only).

Pages are Jinja2 templates in templates/web/, overridable like the e-mail's: a `web/` folder in
the configuration's `templates:` folder. Every response carries security headers (a strict
Content-Security-Policy, no framing, no referrer, so a token never leaks to a linked site);
request bodies are limited in size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import DigestError
from ..render.links import email_from_token
from ..render.renderer import builtin_templates
from ..store.ledger import Ledger
from ..subscribe.centre import Centre
from .admin import admin_routes
from .centre import centre_routes
from .csrf import Csrf
from .ratings import rating_routes

log = logging.getLogger("digest.web")

MAX_BODY = 64 * 1024  # a form is a few hundred bytes; nothing larger is read
BODY_TIMEOUT = 10.0  # seconds for a request's body to arrive whole, from the first read of it
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; "
                                 b"form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
_STATIC = "/static/site.css"
_SCRIPTS = ("timezone.js", "preview.js", "rate.js")  # small helpers; every page works without them

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Pages:
    """The pages' templates: the configuration's `templates:/web/` first, then the shipped ones."""

    def __init__(self, list_name: str, templates: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates is not None and (templates / "web").is_dir():
            loaders.append(jinja2.FileSystemLoader(templates / "web"))
        loaders.append(jinja2.FileSystemLoader(builtin_templates() / "web"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined)
        self.list_name = list_name

    def page(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(list_name=self.list_name, static_url=_STATIC, **values)
        return HTMLResponse(html, status_code=status)

    def css(self) -> str:
        return self.source("site.css")

    def source(self, name: str) -> str:
        source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return source


def make_app(secret: str, ledger: Ledger, *, list_name: str = "Paper digest", templates: Path | None = None,
             centre: Centre | None = None) -> ASGIApp:
    """The web side; with a `centre`, the subscription centre's pages too (web/centre.py)."""
    pages = Pages(list_name, templates)
    base_url = centre.config.base_url if centre else None
    csrf = Csrf(secret, site_host=urlsplit(base_url).netloc if base_url else None)

    def not_valid(status: int) -> HTMLResponse:
        return pages.page("unsubscribe.html.j2", status, title="Link not valid", state="invalid",
                          message="This unsubscribe link is not valid. Reply to the digest e-mail instead.")

    def unsubscribed(email: str, since: datetime, *, already: bool) -> HTMLResponse:
        return pages.page("unsubscribe.html.j2", title="Already unsubscribed" if already else "Unsubscribed",
                          state="unsubscribed", email=email, already=already, since=f"{since:%Y-%m-%d}")

    async def unsubscribe(request: Request) -> Response:
        email = email_from_token(secret, request.path_params["token"])
        if email is None:
            return not_valid(400)
        if centre is not None and not await run_in_threadpool(centre.knows, email):  # deleted (or taken off
            # the list): an old e-mail's link records nothing, neither "unsubscribed" nor "again"
            return pages.page("unsubscribe.html.j2", title="Not subscribed", state="gone",
                              message=f"{email} is not subscribed: it gets no paper digests, and nothing is kept "
                                      "about it here.")
        if request.method == "GET":
            since = (await run_in_threadpool(ledger.state, email)).unsubscribed_at
            if since is not None:  # a second visit: say so, never ask again
                return unsubscribed(email, since, already=True)
            return pages.page("unsubscribe.html.j2", title="Unsubscribe", state="ask", email=email)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("action") == ["resubscribe"]:
            await run_in_threadpool(ledger.resubscribe, email)
            log.info("resubscribed %s", email)
            return pages.page("unsubscribe.html.j2", title="Subscribed again", state="resubscribed", email=email)
        # The button, or a mail client's one-click request (RFC 8058: List-Unsubscribe=One-Click).
        now = datetime.now(UTC)
        since = await run_in_threadpool(ledger.unsubscribe, email, now)
        if since != now:
            return unsubscribed(email, since, already=True)
        log.info("unsubscribed %s", email)
        return unsubscribed(email, now, already=False)

    async def health(_request: Request) -> Response:
        """For a load balancer or a monitor: 200 while the pages can reach the state database."""
        try:
            await run_in_threadpool(ledger.store.ping)
        except DigestError as exc:
            log.warning("health check: %s", exc)
            return Response("the state database does not answer\n", 503, media_type="text/plain")
        return Response("ok\n", media_type="text/plain")

    async def stylesheet(_request: Request) -> Response:
        return Response(pages.css(), media_type="text/css")

    async def script(request: Request) -> Response:
        if request.path_params["name"] not in _SCRIPTS:
            return not_valid(404)
        return Response(pages.source(request.path_params["name"]), media_type="text/javascript")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404 and request.url.path.startswith("/unsubscribe"):
            return not_valid(404)
        if status == 404:
            return pages.page("message.html.j2", 404, title="Page not found", state="missing",
                              message="There is no page at this address. Check the link you followed.")
        return pages.page("unsubscribe.html.j2", status, title="Not allowed", state="error",
                          message="This address does not take that request.")

    app = Starlette(routes=[
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route(_STATIC, stylesheet, methods=["GET"]),
        Route("/static/{name}", script, methods=["GET"]),
        *centre_routes(centre, pages.page, csrf),
        *rating_routes(centre, pages.page, csrf),
        *admin_routes(centre, pages.page, csrf),
    ], exception_handlers={404: http_error, 405: http_error, 408: body_too_slow})
    app.router.redirect_slashes = False  # its redirect names the Host the request gave: slash_less instead
    return security_headers(head_as_get(slash_less(body_limit(app, MAX_BODY))))


def slash_less(app: ASGIApp) -> ASGIApp:
    """A path with a trailing slash redirected to the path without it, by a relative Location:
    Starlette's own redirect wrote the request's Host header into it (`Host: evil.example`
    sent a reader's manage token there, through a proxy that passes Host on)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            query = scope.get("query_string", b"")
            target = "/" + path.strip("/") + (f"?{query.decode('latin-1')}" if query else "")
            headers = [(b"location", quote(target, safe="/?=&~%:+,;@!$'()*").encode("ascii")), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 307, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return wrapped


def head_as_get(app: ASGIApp) -> ASGIApp:
    """HEAD answered as GET (the server sends the headers alone). Every page's handler takes
    what is not a GET for its form's POST: a link checker's or mail scanner's HEAD of an
    unsubscribe link unsubscribed the reader."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}  # the server's own record of the request stays HEAD
        await app(scope, receive, send)

    return wrapped


async def body_too_slow(_request: Request, _exc: Exception) -> Response:
    """body_limit's 408, and the connection closed (kept alive, the client's half-sent body
    would hold it until the keep-alive timeout)."""
    return Response("request body too slow\n", 408, media_type="text/plain", headers={"connection": "close"})


def security_headers(app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def body_limit(app: ASGIApp, limit: int) -> ASGIApp:
    """413 for a body over `limit` bytes, by its Content-Length or as it arrives (chunked);
    408 for one not whole within BODY_TIMEOUT seconds (a client that declares 60 KB and sends a
    byte held its connection for ever, and twenty thousand of them every file descriptor); a
    client gone mid-body is nothing to answer (uvicorn logged a traceback for each)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(send)
        seen = 0
        deadline: float | None = None

        async def counted() -> Message:
            nonlocal seen, deadline
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + BODY_TIMEOUT  # from the app's first read of the body
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(408) from None
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413)
            return message

        try:
            await app(scope, counted, send)
        except HTTPException as exc:
            if exc.status_code != 413:
                raise
            await _too_large(send)
        except ClientDisconnect:
            log.debug("a client left before its request's body was whole")

    return wrapped


async def _too_large(send: Send) -> None:
    body = b"request body too large\n"
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
