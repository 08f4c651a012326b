"""The unsubscribe endpoint `digest run` serves when `listen:` is set (put it behind the web
server that answers for `base_url`): the web app (web/app.py) on uvicorn (web/server.py)."""

from __future__ import annotations

from pathlib import Path

from ..store.ledger import Ledger
from ..subscribe.centre import Centre
from .app import make_app
from .server import WebServer


def unsubscribe_server(address: str, secret: str, ledger: Ledger, *, list_name: str = "Paper digest",
                       templates: Path | None = None, centre: Centre | None = None) -> WebServer:
    return WebServer(make_app(secret, ledger, list_name=list_name, templates=templates, centre=centre), address,
                     hint="change `listen:`")
