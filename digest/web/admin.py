"""The admin page: /admin lists every subscriber (of every origin: subscribers.yaml's, the
`digest subscribers` command's, and those who signed up on the web) and every pending sign-up,
with their state, latest digest, digests sent and refusals in a row; searched by address,
filtered by state, 100 a page (read a page at a time: store/overview.py), counts by state on
top. Three buttons act on one row each: suspend, resume (a suspension: an unsubscription is
the subscriber's own to undo) and, for a pending sign-up, resend its confirmation. Every
button is a POST with the CSRF field (web/csrf.py), answered by a redirect back to the list
(Post/Redirect/Get). No JavaScript.

Access: HTTP basic auth with the password in the environment variable DIGEST_ADMIN_PASSWORD
of the process serving the pages (read when the web side starts: restart it after a change).
Unset or empty, /admin answers 404: the pages are off. Any user name is taken (a browser asks
for one; type `admin`): the password is the only secret. It is compared in constant time. A
client address whose wrong passwords reach FAILURES_PER_HOUR within an hour gets 429 with
Retry-After for every request to /admin, the right password included, until the hour has
moved on (requests without credentials, a browser's first, are not counted).

Basic auth sends the password with every request, only base64-encoded: use these pages
over HTTPS only, through the proxy that terminates TLS for `base_url`, and never on a
plain-HTTP port another machine can reach (`listen:` on 127.0.0.1 behind the proxy). The
client address of the failure limit is the proxy's X-Forwarded-For when the proxy is on
the same machine (uvicorn trusts it from 127.0.0.1), else the connection's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..deliver import roster
from ..store.ledger import subscriber_key
from ..store.overview import STATES, Member, Overview
from ..subscribe.centre import CONFIRM_FOR, Centre
from .centre import Limiter, forged_page
from .csrf import FIELD, Csrf

log = logging.getLogger("digest.web")

PASSWORD_VARIABLE = "DIGEST_ADMIN_PASSWORD"
REALM = 'Basic realm="paper digest admin"'
FAILURES_PER_HOUR = 20  # wrong passwords from one client address in an hour; then 429
PAGE_SIZE = 100
SUSPENDED_BY_ADMIN = "suspended by the admin"
MAX_SEARCH = 320  # an address is at most 254 characters

NOTICES = {
    "suspended": "Suspended: no digests go to that address until you resume it.",
    "already-suspended": "That subscriber was suspended already: nothing changed.",
    "resumed": "Resumed: digests go to that address again from the next one.",
    "not-suspended": "That subscriber was not suspended: nothing changed.",
    "unsubscribed": "That subscriber unsubscribed: only they can subscribe again (the manage link or any "
                    "digest's unsubscribe page). Nothing changed.",
    "missing": "There is no such subscriber (removed meanwhile?): nothing changed.",
    "resent": "A fresh confirmation link is on its way (valid 48 hours); the one mailed before no longer works.",
    "capped": "Not sent: the cap on mail to that address a day, or to anyone an hour, is reached. Try later.",
    "subscribed": "Not sent: that address is a subscriber now.",
    "gone": "Not sent: that sign-up is no longer pending (confirmed, or purged a week after it was made).",
    "failed": "Not sent: the mail could not be handed to the SMTP server (the log says why). Nothing changed.",
}


def admin_password() -> str | None:
    return os.environ.get(PASSWORD_VARIABLE) or None


def _given_password(header: str | None) -> bytes | None:
    """The password of an `Authorization: Basic` header (b"" for a malformed one), None if
    there is no such header."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    _user, colon, password = decoded.partition(b":")
    return password if colon else b""


def _same(given: bytes, expected: bytes) -> bool:
    """Constant time, whatever the lengths: the digests are compared, not the passwords."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else ""


def admin_routes(centre: Centre | None, page: Callable[..., HTMLResponse], csrf: Csrf) -> list[Route]:
    password = admin_password()
    expected = password.encode() if password else b""
    failures = Limiter(FAILURES_PER_HOUR)
    overview = Overview(centre.directory.store) if centre is not None else None

    def message(status: int, title: str, state: str, text: str) -> HTMLResponse:
        return page("message.html.j2", status, title=title, state=state, message=text)

    def off() -> HTMLResponse:
        if password is None:
            return message(404, "Admin pages off", "missing",
                           f"The admin pages are off: set {PASSWORD_VARIABLE} in the environment of the "
                           "process serving these pages, and restart it.")
        return message(404, "Admin pages off", "missing",
                       "The admin pages need the subscription centre: set base_url in the configuration.")

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def too_many(seconds: int) -> HTMLResponse:
        minutes = max(1, round(seconds / 60))
        response = message(429, "Too many wrong passwords", "limited",
                           f"Too many wrong passwords from your address. Try again in {minutes} minute"
                           f"{'s' if minutes != 1 else ''}.")
        response.headers["retry-after"] = str(seconds)
        return response

    def refused(request: Request) -> Response | None:
        """None if the request carries the password; else the answer (401, or 429)."""
        if (wait := failures.blocked(client(request))) is not None:
            return too_many(wait)
        given = _given_password(request.headers.get("authorization"))
        if given is not None and _same(given, expected):
            return None
        if given is not None:  # a wrong password (not a browser's first request, without one)
            log.warning("admin pages: a wrong password from %s", client(request))
            if (wait := failures.retry_after(client(request))) is not None:
                return too_many(wait)
        response = message(401, "Sign in", "forged", "This page needs the admin password.")
        response.headers["www-authenticate"] = REALM
        return response

    def wanted(request: Request) -> tuple[str, str | None, int]:
        """The list's search, state filter and page number, as asked (anything else ignored)."""
        params = request.query_params
        search = params.get("q", "").strip()[:MAX_SEARCH]
        state = params.get("state") if params.get("state") in STATES else None
        number = params.get("page", "1")
        return search, state, int(number) if re.fullmatch(r"[0-9]{1,6}", number) and int(number) > 0 else 1

    def url(search: str, state: str | None, number: int = 1, **more: str) -> str:
        """A link to the list (relative: a path prefix at the proxy still works)."""
        params = {"q": search, "state": state or "", "page": str(number) if number > 1 else "", **more}
        return "?" + urlencode({k: v for k, v in params.items() if v})

    def row(member: Member, summaries: dict[str, Any], now: datetime) -> dict[str, Any]:
        if member.signup_id is not None:
            return {"email": member.email, "origin": member.origin, "state": member.state, "last": None, "sent": "—",
                    "failures": "—", "reason": "", "signup": member.signup_id,
                    "signed_up": _when(member.signed_up_at),
                    "expired": member.signed_up_at is not None and now - member.signed_up_at >= CONFIRM_FOR}
        latest, sent = summaries.get(member.email, (None, 0))
        last = None if latest is None else {"period": latest.period, "state": latest.state,
                                            "when": _when(latest.sent_at or latest.created_at)}
        return {"email": member.email, "origin": member.origin, "state": member.state, "last": last, "sent": sent,
                "failures": member.hard_failures, "reason": member.suspended_reason or "", "signup": None}

    def listing(request: Request) -> HTMLResponse:
        assert centre is not None and overview is not None
        search, state, number = wanted(request)
        now = centre.clock()
        roster.sync(centre.config, centre.directory, now)  # subscribers.yaml's as the file has them now
        counts = overview.counts(now, search=search)
        total = counts[state] if state else sum(counts.values())
        last_page = max(1, math.ceil(total / PAGE_SIZE))
        members = overview.page(now, search=search, state=state, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        summaries = centre.ledger.summaries([m.email for m in members if m.signup_id is None])
        done = request.query_params.get("done", "")
        token, cookie = csrf.token(request)
        response = page("admin.html.j2", title="Subscribers", wide=True, csrf_field=FIELD, csrf_token=token,
                        notice=NOTICES.get(done, ""), failed=done in ("failed", "capped"), states=STATES,
                        counts=counts, everyone=sum(counts.values()), total=total, search=search, state=state,
                        rows=[row(m, summaries, now) for m in members], number=number, last_page=last_page,
                        state_links={name: url(search, name) for name in STATES}, all_link=url(search, None),
                        previous=url(search, state, number - 1) if number > 1 else None,
                        next=url(search, state, number + 1) if number < last_page else None,
                        first=(number - 1) * PAGE_SIZE + 1, shown=len(members))
        return csrf.set_cookie(request, response, cookie)  # type: ignore[return-value]

    def act(action: str, form: dict[str, list[str]]) -> str:
        """Do what a button asked; what became of it (a key of NOTICES)."""
        assert centre is not None
        if action == "resend":
            try:
                outcome = centre.resend_confirmation(first(form, "signup"))
            except Exception as exc:  # the SMTP server's answer, or none: the admin is told, the log says
                log.error("admin pages: could not mail a confirmation link: %s: %s", exc.__class__.__name__, exc)
                return "failed"
            return "resent" if outcome == "sent" else outcome
        key = subscriber_key(first(form, "email"))
        listed = centre.directory.get([key]).get(key) if key else None
        if listed is None:
            return "missing"
        if action == "suspend":
            suspended = centre.ledger.suspend(listed.email, SUSPENDED_BY_ADMIN, centre.clock())
            log.info("admin pages: %s a subscriber", "suspended" if suspended else "(already) suspended")
            return "suspended" if suspended else "already-suspended"
        state = centre.ledger.state(listed.email)
        if state.unsubscribed_at is not None:
            return "unsubscribed"
        if state.suspended_at is None:
            return "not-suspended"
        centre.ledger.resume(listed.email)
        log.info("admin pages: resumed a subscriber")
        return "resumed"

    async def admin(request: Request) -> Response:
        if password is None or centre is None:
            return off()
        if (answer := refused(request)) is not None:
            return answer
        if request.method == "GET":
            return await run_in_threadpool(listing, request)
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        if not csrf.valid(request, form):
            return forged_page(page)
        action = first(form, "action")
        if action not in ("suspend", "resume", "resend"):
            return message(400, "Not understood", "invalid", "That form asked for something this page does not do.")
        done = await run_in_threadpool(act, action, form)
        search, state, number = wanted(request)
        return Response(status_code=303, headers={"location": url(search, state, number, done=done)})

    return [Route("/admin", admin, methods=["GET", "POST"])]


def first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()
