"""Unsubscribing: the one-click endpoint (RFC 8058) on loopback, and the command."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter

import pytest

from digest.config import load_config
from digest.render.links import unsubscribe_token
from digest.store import Store
from digest.store.ledger import Ledger
from digest.web.unsubscribe import unsubscribe_server

from .smtp_server import SmtpServer
from .test_deliver import digest_cli, fetched, setup  # noqa: F401 - the fixture

pytestmark = [pytest.mark.clock, pytest.mark.database]  # also under faketime, and on PostgreSQL (.ci/run)


def request(url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_one_click_unsubscribe_then_no_more_digests(tmp_path, fetched):  # noqa: F811
    with SmtpServer() as server:
        config_path = setup(tmp_path, fetched, server.port, ["a@example.org", "b@example.org"])
        store = Store(load_config(config_path).database_url())
        secret = store.secret()
        web = unsubscribe_server("127.0.0.1:0", secret, Ledger(store))
        threading.Thread(target=web.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{web.server_address[1]}/unsubscribe/"
        try:
            token = unsubscribe_token(secret, "a@example.org")
            status, page = request(base + token)  # a link scanner's GET changes nothing
            assert status == 200 and "<form method=\"post\">" in page
            assert Ledger(store).state("a@example.org").active
            forged = unsubscribe_token("not-the-key", "b@example.org")
            assert request(base + forged, b"List-Unsubscribe=One-Click")[0] == 400
            status, page = request(base + token, b"List-Unsubscribe=One-Click")
            assert status == 200 and "will get no more" in page
        finally:
            web.shutdown()
        assert not Ledger(store).state("a@example.org").active and Ledger(store).state("b@example.org").active

        result = digest_cli("send", config=config_path)
        assert "1 sent" in result.stdout and "unsubscribed" in result.stdout
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter({"b@example.org": 1})
        assert "unsubscribed" in digest_cli("status", config=config_path).stdout

        assert digest_cli("unsubscribe", "a@example.org", "--undo", config=config_path).returncode == 0
        assert "1 sent" in digest_cli("send", config=config_path).stdout
