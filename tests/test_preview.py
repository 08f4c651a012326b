"""`digest preview` as a user runs it: every format, a file, and the live preview server."""

from __future__ import annotations

import email
import email.policy
import json
import os
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.web.preview import serve

from .conftest import fresh_database, write_config
from .test_cli import SAMPLES, digest

pytestmark = [pytest.mark.clock, pytest.mark.database]  # under faketime at other dates; on PostgreSQL (.ci/run)

TOPICS = """    name: Alice
    max_papers: 10
    topics:
      - name: Efficient inference
        keywords: [KV cache, quantization]
"""


@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("preview")
    sources = [{"name": "arxiv", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
               {"name": "hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")}]
    config = write_config(directory, sources, extra=TOPICS, state=fresh_database(directory))
    assert digest("-c", str(config), "fetch").returncode == 0
    return config


def test_a_templates_folder_with_a_typo_is_said_not_replaced_by_the_built_in_one(fetched, tmp_path):
    config = tmp_path / "subscribers.yaml"
    config.write_text(fetched.read_text(encoding="utf-8") + "templates: my-tmeplates\n", encoding="utf-8")
    result = digest("-c", str(config), "preview", "alice@example.org")
    assert result.returncode == 2 and not result.stdout
    assert f"templates: no such folder: {tmp_path / 'my-tmeplates'}" in result.stderr


def test_a_preview_of_someone_who_gets_nothing_now_says_so(fetched, tmp_path):
    """The digest of an unsubscribed reader was shown as if it would go out."""
    config = tmp_path / "subscribers.yaml"
    config.write_text(fetched.read_text(encoding="utf-8"), encoding="utf-8")
    assert digest("-c", str(config), "unsubscribe", "alice@example.org").returncode == 0
    shown = digest("-c", str(config), "preview", "alice@example.org")
    assert shown.returncode == 0 and "## Efficient inference" in shown.stdout
    assert "note: alice@example.org is unsubscribed: nothing is sent to them now" in shown.stderr
    assert digest("-c", str(config), "unsubscribe", "--undo", "alice@example.org").returncode == 0
    assert "note:" not in digest("-c", str(config), "preview", "alice@example.org").stderr


def test_a_since_in_the_future_is_refused_and_an_empty_window_suggests_a_longer_one(fetched):
    """`--since 2030-01-01` said "no papers stored in this window; run `digest fetch` first"."""
    later = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()  # the clock as the run's (faketime too)
    future = digest("-c", str(fetched), "preview", "alice@example.org", "--since", later)
    assert future.returncode == 2 and f"{later} is in the future: nothing was seen since" in future.stderr
    empty = digest("-c", str(fetched), "preview", "alice@example.org", "--since", "1s")
    assert empty.returncode == 0 and "a longer --since looks further back" in empty.stderr


def test_open_with_no_browser_says_where_the_file_is(fetched, monkeypatch):
    monkeypatch.setenv("BROWSER", "false")  # a browser that cannot start: as on a server with none
    result = digest("-c", str(fetched), "preview", "alice@example.org", "--format", "html", "--open")
    assert result.returncode == 0 and "wrote " in result.stderr
    assert "note: no web browser found here to open it; open file:///" in result.stderr


def test_preview_html_text_eml(fetched, tmp_path):
    html_file = tmp_path / "alice.html"
    result = digest("-c", str(fetched), "preview", "alice@example.org", "--format", "html", "--out", str(html_file))
    assert result.returncode == 0 and f"wrote {html_file}" in result.stderr
    html = html_file.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.count('<h3 class="pt"') == 10
    nowhere = tmp_path / "no-such-folder" / "alice.html"  # it ended in "internal error: FileNotFoundError"
    result = digest("-c", str(fetched), "preview", "alice@example.org", "--out", str(nowhere))
    assert result.returncode == 2 and f"no folder '{nowhere.parent}' to write it in" in result.stderr

    text = digest("-c", str(fetched), "preview", "alice@example.org", "--format", "text").stdout
    assert "## Efficient inference (10)" in text and "Unsubscribe: mailto:digest@example.org" in text

    raw = digest("-c", str(fetched), "preview", "alice@example.org", "--format", "eml").stdout.encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "Alice <alice@example.org>" and message["Subject"].startswith("Paper digest ·")
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]

    data = json.loads(digest("-c", str(fetched), "preview", "alice@example.org", "--format", "json").stdout)
    assert data["subject"] == message["Subject"]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback only
        return response.read().decode("utf-8")


def test_preview_server_shows_every_subscriber_and_follows_template_changes(fetched, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    config = fetched.parent / "served.yaml"
    config.write_text(fetched.read_text().replace("sources:", f"templates: {templates}\nsources:", 1), encoding="utf-8")
    server = serve(str(config), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert "alice@example.org" in get(base + "/")
        page = get(base + "/s/alice@example.org")
        assert "width='375'" in page and "width='600'" in page and "Efficient inference (10)" in page
        assert page.count("sandbox=''") == 2  # as a mail client: no script of a template runs
        with urllib.request.urlopen(base + "/s/alice@example.org/html", timeout=30) as shown:
            assert "script-src 'none'" in shown.headers["Content-Security-Policy"]
        assert "Alice · 1 topic</li>" in get(base + "/")  # not "1 topics"
        assert "<pre>" in page and "white-space:pre;" in page  # the text part as it is sent, not re-wrapped
        with pytest.raises(urllib.error.HTTPError) as unknown:
            get(base + "/s/nobody@example.org")
        assert unknown.value.code == 404 and "no subscriber" in unknown.value.read().decode()
        before = get(base + "/version")
        assert "Custom footer" not in get(base + "/s/alice@example.org/html")

        footer = templates / "_footer.html.j2"
        footer.write_text('<div class="rule">Custom footer for {{ email }}. '
                          '<a href="{{ unsubscribe_url }}">Unsubscribe</a></div>\n', encoding="utf-8")
        os.utime(footer, ns=(time.time_ns(), time.time_ns() + 10**9))  # a modification time surely new
        assert get(base + "/version") != before
        assert "Custom footer for alice@example.org" in get(base + "/s/alice@example.org/html")
        assert get(base + "/s/alice@example.org/text").startswith("Paper digest ·")

        (templates / "_footer.html.j2").write_text("{{ broken }\n", encoding="utf-8")
        with pytest.raises(urllib.error.HTTPError) as failed:
            get(base + "/s/alice@example.org/html")
        assert failed.value.code == 500 and "_footer.html.j2:1" in failed.value.read().decode()
    finally:
        server.shutdown()
