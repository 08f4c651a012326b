"""The page behind the "More like this" / "Not for me" links under each paper of a digest.

GET /rate/more/<token> (or less) asks (mail scanners fetch links: a GET records nothing); the page submits
itself once with JavaScript (static/rate.js), or the reader presses its button. POST records
the rating — the reader's one of that paper, replacing any earlier one; the same POST again
changes nothing — and offers Undo (action=undo takes this rating back). The token is who,
which paper and which topic, sealed with the installation's key (render/links.py): it cannot
be made or altered, and says nothing to anyone else. The first links, /rate/<token>, had the
value sealed in too; they still work. A token of a subscriber no longer in the directory (deleted)
is refused like a forged one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..render.links import rating_from_token
from ..subscribe.centre import Centre
from ..subscribe.learning import retrain
from .centre import forged_page, form_page, posted_form
from .csrf import Csrf

log = logging.getLogger("digest.web")


@dataclass(frozen=True)
class Rated:
    """What a genuine rating token says, for a subscriber who is still there."""

    key: str
    paper: str
    paper_title: str
    topic: str
    value: int


def rating_routes(centre: Centre | None, page: Callable[..., HTMLResponse], csrf: Csrf) -> list[Route]:
    def invalid() -> HTMLResponse:
        return page("message.html.j2", 400, title="Link not valid", state="invalid",
                    message="This rating link is not valid. Use the links in your latest digest.")

    def read(token: str, word: str | None) -> Rated | None:
        assert centre is not None
        found = rating_from_token(centre.secret, token, word)
        if found is None:
            return None
        key, paper, topic, value = found
        if not centre.directory.get([key]):
            return None  # deleted (or never there): nothing to record against
        stored = centre.directory.store.papers(ids=[paper])
        return Rated(key, paper, stored[0].title if stored else paper, topic, value)

    def shown(request: Request, rated: Rated, state: str) -> HTMLResponse:
        title = "Thanks" if state == "done" else "Rate this paper"
        return form_page(csrf, page, request, "rate.html.j2", title=title, state=state,
                         paper_title=rated.paper_title, topic=rated.topic, value=rated.value)

    async def rate(request: Request) -> Response:
        if centre is None:
            return invalid()
        rated = await run_in_threadpool(read, request.path_params["token"], request.path_params.get("word"))
        if rated is None:
            return invalid()
        if request.method == "GET":
            return shown(request, rated, "ask")
        form = await posted_form(csrf, request)
        if form is None:
            return forged_page(page)
        if (form.get("action") or [""])[0] == "undo":
            def undo() -> None:
                assert centre is not None
                current = centre.ratings.get(rated.key, rated.paper)
                if current is not None and current.value == rated.value:  # this rating, not a later other one
                    centre.ratings.remove(rated.key, rated.paper)
                    retrain(centre.directory.store, rated.key, rated.topic, centre.clock())
            await run_in_threadpool(undo)
            return shown(request, rated, "undone")
        changed = await run_in_threadpool(centre.ratings.rate, rated.key, rated.paper, rated.topic, rated.value,
                                          centre.clock())
        if changed:  # what the topic's ratings teach, retrained now (milliseconds), not per digest
            log.info("a subscriber rated a paper")
            await run_in_threadpool(retrain, centre.directory.store, rated.key, rated.topic, centre.clock())
        return shown(request, rated, "done")

    return [Route("/rate/{word}/{token}", rate, methods=["GET", "POST"]),
            Route("/rate/{token}", rate, methods=["GET", "POST"])]  # the first links' (the value sealed in)
