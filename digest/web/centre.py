"""The subscription centre's pages: thin routes over subscribe/centre.py.

GET /subscribe shows the form; POST /subscribe validates it (every problem at its field,
nothing stored until all is valid) and answers "check your inbox" whether the address is new,
already subscribed or refused by a cap; the e-mail goes out after the answer, so not even the
response time tells who is subscribed. GET /confirm/<token> shows a button, POST confirms.
GET /manage asks for an address, POST mails a fresh manage link (the same answer for anyone).

Abuse: every form carries a CSRF token (web/csrf.py); a honeypot field that people never see
marks bots, who get the usual answer and nothing else; each client address may send
`signups.per_client` requests an hour (then 429 with Retry-After); the centre caps the mail.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import available_timezones

from limits import RateLimitItemPerHour, storage, strategies
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..config import Subscriber
from ..subscribe import form as signup_form
from ..subscribe.centre import Centre
from ..subscribe.manage import Managed, SelfService, paused_day
from .csrf import FIELD, Csrf

log = logging.getLogger("digest.web")

HONEYPOT = "website"  # a field people never see (hidden by the stylesheet, skipped by tab)


@lru_cache(maxsize=1)
def time_zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))) + ["UTC"]


class Limiter:
    """Requests per client address an hour (a moving window, in this process's memory)."""

    def __init__(self, per_hour: int) -> None:
        self.item = RateLimitItemPerHour(per_hour)
        self.window = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """None if the request may go on (and counts it), else seconds until it may."""
        if self.window.hit(self.item, "web", client):
            return None
        return self._wait(client)

    def blocked(self, client: str) -> int | None:
        """Seconds until the client may go on if it has used up its limit, else None (nothing
        counted: for limits on failures, counted with `retry_after` when one happens)."""
        if self.window.test(self.item, "web", client):
            return None
        return self._wait(client)

    def _wait(self, client: str) -> int:
        reset = self.window.get_window_stats(self.item, "web", client).reset_time
        return max(1, math.ceil(reset - time.time()))


def form_page(csrf: Csrf, page: Callable[..., HTMLResponse], request: Request, name: str, status: int = 200,
              **values: Any) -> HTMLResponse:
    """A page with a form: its CSRF field's value, and the cookie it is checked against."""
    token, cookie = csrf.token(request)
    return csrf.set_cookie(request, page(name, status, csrf_field=FIELD, csrf_token=token, **values), cookie)  # type: ignore[return-value]


def forged_page(page: Callable[..., HTMLResponse]) -> HTMLResponse:
    """The answer to a post that did not come from one of our pages (or an expired one)."""
    return page("message.html.j2", 403, title="Form expired", state="forged",
                message="This form was not sent from this site's page, or it has expired. "
                        "Go back, reload the page and send it again.")


async def posted_form(csrf: Csrf, request: Request) -> dict[str, list[str]] | None:
    """The posted form's fields, or None when it was not sent from one of our pages."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return form if csrf.valid(request, form) else None


def centre_routes(centre: Centre | None, page: Callable[..., HTMLResponse], csrf: Csrf) -> list[Route]:
    limiter = Limiter(centre.config.signups.per_client if centre else 10)

    def closed() -> HTMLResponse:
        return page("message.html.j2", 404, title="Sign-ups are closed", state="closed",
                    message="This list does not take sign-ups on the web. Ask the person who runs it.")

    def invalid_link(kind: str) -> HTMLResponse:
        return page("message.html.j2", 400, title="Link not valid", state="invalid",
                    message=f"This {kind} link is not valid: it may have been used already, or it has expired. "
                            + ("Sign up again to get a new one." if kind == "confirmation"
                               else "Ask for a fresh one below."), ask_link=kind == "manage")

    def too_many(seconds: int) -> HTMLResponse:
        minutes = max(1, round(seconds / 60))
        response = page("message.html.j2", 429, title="Too many requests", state="limited",
                        message=f"Too many requests from your address. Try again in {minutes} minute"
                                f"{'s' if minutes != 1 else ''}.")
        response.headers["retry-after"] = str(seconds)
        return response

    def with_token(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return form_page(csrf, page, request, name, status, **values)

    async def posted(request: Request) -> dict[str, list[str]] | None:
        return await posted_form(csrf, request)

    def signup_page(request: Request, values: dict[str, Any], errors: dict[str, str] | None = None,
                    status: int = 200) -> HTMLResponse:
        assert centre is not None
        return with_token(request, "subscribe.html.j2", status, title="Subscribe", values=values,
                          errors=errors or {}, presets=centre.config.presets, zones=time_zones(),
                          days=signup_form.DAYS, honeypot=HONEYPOT)

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def background(call: Callable[..., None], *args: Any) -> BackgroundTask:
        def run() -> None:
            try:
                call(*args)
            except Exception as exc:  # the visitor has their answer; the admin reads the log
                log.error("could not mail a subscription link: %s: %s", exc.__class__.__name__, exc)
        return BackgroundTask(run)

    async def mailing_form(request: Request) -> dict[str, list[str]] | Response:
        """The form of a request that may send mail: within its client's rate (else 429), and
        posted from our page (else 403)."""
        if (wait := limiter.retry_after(client(request))) is not None:
            return too_many(wait)
        form = await posted(request)
        return forged_page(page) if form is None else form

    async def subscribe(request: Request) -> Response:
        if centre is None or not centre.config.signups.open:
            return closed()
        if request.method == "GET":
            return signup_page(request, signup_form.blank(centre.config))
        form = await mailing_form(request)
        if isinstance(form, Response):
            return form
        sent = page("message.html.j2", title="Check your inbox", state="sent",
                    message="We sent a link to the address you gave. Open it within 48 hours to confirm your "
                            "subscription; until then you get nothing else from us.")
        if (form.get(HONEYPOT) or [""])[0]:
            return sent  # a bot: the usual answer, and nothing done
        filled = signup_form.read(centre.config, form)
        if filled.subscriber is None:
            return signup_page(request, filled.values, filled.errors, 400)
        sent.background = background(centre.sign_up, filled.subscriber)
        return sent

    async def confirm(request: Request) -> Response:
        if centre is None:
            return closed()
        token = request.path_params["token"]
        if request.method == "GET":
            signup = await run_in_threadpool(centre.pending, token)
            if signup is None and await run_in_threadpool(centre.confirmed_before, token):
                return page("message.html.j2", title="Already subscribed", state="confirmed-before", ask_link=True,
                            message="This subscription is confirmed already: nothing more to do. To change "
                                    "your topics, follow the link at the end of any digest, or ask for one below.")
            if signup is None:
                return invalid_link("confirmation")
            return with_token(request, "confirm.html.j2", title="Confirm your subscription", email=signup.email)
        form = await posted(request)
        if form is None:
            return forged_page(page)
        done = await run_in_threadpool(centre.confirm, token)
        if done is None:
            return invalid_link("confirmation")
        return page("message.html.j2", title="You are subscribed", state="confirmed", email=done.email,
                    manage_url=done.manage_url, message="")

    async def ask_for_link(request: Request) -> Response:
        if centre is None:
            return closed()
        if request.method == "GET":
            return with_token(request, "manage_ask.html.j2", title="Manage your subscription", email="")
        form = await mailing_form(request)
        if isinstance(form, Response):
            return form
        sent = page("message.html.j2", title="Check your inbox", state="sent",
                    message="If that address gets this list, a link to manage it is on its way. "
                            "Links from earlier e-mails stop working a day after this one.")
        email = (form.get("email") or [""])[0].strip()
        if (form.get(HONEYPOT) or [""])[0] or not email:
            return sent
        try:
            Subscriber.model_validate({"email": email})
        except ValueError:  # pydantic's ValidationError is one
            return with_token(request, "manage_ask.html.j2", 400, title="Manage your subscription", email=email,
                              error="That is not an e-mail address: check it and send again.")
        sent.background = background(centre.mail_manage_link, email)
        return sent

    service = SelfService(centre) if centre is not None else None

    def managed_service() -> SelfService:
        assert service is not None
        return service

    async def managed_of(request: Request) -> Managed | None:
        """The subscriber the URL's manage token is valid for now (one trip to the threads)."""
        if service is None:
            return None
        return await run_in_threadpool(service.by_token, request.path_params["token"])

    def preview_of(subscriber: Subscriber) -> dict[str, Any]:
        assert service is not None
        digest = service.preview(subscriber)
        shown = [s for s in digest.sections if s.entries]
        sections = [{"topic": s.topic, "count": len(s.entries) + s.omitted, "shown": [
            {"title": e.paper.title, "url": e.paper.url, "why": e.why} for e in s.entries]} for s in shown]
        return {"sections": sections, "papers": sum(len(s.entries) for s in shown),
                "matched": sum(len(s.entries) + s.omitted for s in shown)}

    def manage_page(request: Request, managed: Managed, *, values: dict[str, Any] | None = None,
                    errors: dict[str, str] | None = None, status: int = 200, notice: str = "",
                    preview: dict[str, Any] | None = None, unsaved: bool = False) -> HTMLResponse:
        assert centre is not None
        config = centre.config
        today = managed_service().today(managed)
        return with_token(request, "manage.html.j2", status, title="Your subscription", managed=managed,
                          values=values or signup_form.values_of(config, managed.subscriber), errors=errors or {},
                          presets=config.presets, zones=time_zones(), days=signup_form.DAYS, notice=notice,
                          preview=preview if preview is not None else preview_of(managed.subscriber),
                          unsaved=unsaved, today=today.isoformat(), tomorrow=(today + timedelta(days=1)).isoformat(),
                          latest=(today + timedelta(days=366)).isoformat(), request_path=request.url.path,
                          ratings=managed_service().rated(managed.row.key),
                          examples_found=managed_service().examples_found(managed.subscriber))

    NOTICES = {"saved": "Your settings are saved: the next digest follows them.",
               "paused": "Paused: no digests until the day you chose.", "resumed": "Digests resume from the next one.",
               "unsubscribed": "Unsubscribed: no more digests. You can come back below.",
               "resubscribed": "Welcome back: digests resume from the next one.",
               "unrated": "Rating removed."}

    async def manage(request: Request) -> Response:
        managed = await managed_of(request)
        if managed is None or service is None:
            return invalid_link("manage")
        key = managed.row.key
        if request.method == "GET":
            done = request.query_params.get("done", "")
            return await run_in_threadpool(lambda: manage_page(request, managed, notice=NOTICES.get(done, "")))
        form = await posted(request)
        if form is None:
            return forged_page(page)
        action = (form.get("action") or [""])[0]
        if action in ("save", "preview"):
            filled = signup_form.read(centre.config, form, email=managed.row.email,  # type: ignore[union-attr]
                                      keep=managed.subscriber)
            if filled.subscriber is None:
                return await run_in_threadpool(lambda: manage_page(
                    request, managed, values=filled.values, errors=filled.errors, status=400, unsaved=True))
            if action == "preview":
                new = filled.subscriber
                return await run_in_threadpool(lambda: manage_page(
                    request, managed, values=filled.values, preview=preview_of(new), unsaved=True,
                    notice="A preview with your changes: not saved yet."))
            await run_in_threadpool(service.save, key, filled.subscriber, filled.renamed)
            return done_redirect("saved")
        if action == "pause":
            until = paused_day((form.get("until") or [""])[0], service.today(managed))
            if until is None:
                return await run_in_threadpool(lambda: manage_page(
                    request, managed, errors={"until": "Pause until: pick a day after today, within a year"},
                    status=400))
            await run_in_threadpool(service.pause, key, until)
            return done_redirect("paused")
        if action == "resume":
            await run_in_threadpool(service.pause, key, None)
            return done_redirect("resumed")
        if action == "unsubscribe":
            await run_in_threadpool(service.unsubscribe, key)
            return done_redirect("unsubscribed")
        if action == "resubscribe":
            await run_in_threadpool(service.resubscribe, key)
            return done_redirect("resubscribed")
        if action == "unrate":
            await run_in_threadpool(service.unrate, key, (form.get("paper") or [""])[0])
            return done_redirect("unrated")
        return page("message.html.j2", 400, title="Not understood", state="invalid",
                    message="That form asked for something this page does not do. Go back and try again.")

    def done_redirect(what: str) -> Response:
        # Post/Redirect/Get, relative to the page (so a path prefix at the proxy still works)
        return Response(status_code=303, headers={"location": f"?done={what}"})

    async def live_preview(request: Request) -> Response:
        """The preview for the form's current values (GET, changes nothing): the manage page's
        script asks as the person edits."""
        managed = await managed_of(request)
        if managed is None:
            return Response("", status_code=404)
        form = parse_qs(request.url.query, keep_blank_values=True)
        filled = signup_form.read(centre.config, form, email=managed.row.email, keep=managed.subscriber)  # type: ignore[union-attr]
        if filled.subscriber is None:
            return page("_preview.html.j2", 200, preview=None, problems=filled.problems, unsaved=True)
        new = filled.subscriber
        return await run_in_threadpool(lambda: page("_preview.html.j2", 200, preview=preview_of(new), problems=[],
                                                    unsaved=True))

    async def export(request: Request) -> Response:
        managed = await managed_of(request)
        data = await run_in_threadpool(managed_service().export, managed.row.key) if managed is not None else None
        if data is None:
            return invalid_link("manage")
        return Response(json.dumps(data, indent=2, ensure_ascii=False), media_type="application/json", headers={
            "content-disposition": 'attachment; filename="my-paper-digest-data.json"'})

    async def delete(request: Request) -> Response:
        managed = await managed_of(request)
        if managed is None:
            return invalid_link("manage")
        if request.method == "GET":
            return with_token(request, "delete.html.j2", title="Delete your data", email=managed.row.email,
                              manage_path=request.url.path.removesuffix("/delete"))
        form = await posted(request)
        if form is None:
            return forged_page(page)
        await run_in_threadpool(managed_service().delete, managed.row.key)
        return page("message.html.j2", title="Deleted", state="deleted",
                    message="Your subscription and everything kept about you are deleted. "
                            "No more digests will come.")

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/manage", ask_for_link, methods=["GET", "POST"]),
        Route("/manage/{token}", manage, methods=["GET", "POST"]),
        Route("/manage/{token}/preview", live_preview, methods=["GET"]),
        Route("/manage/{token}/export", export, methods=["GET"]),
        Route("/manage/{token}/delete", delete, methods=["GET", "POST"]),
    ]
