"""The subscription centre's whole flow in a real browser: Playwright driving Debian's chromium
(nothing downloaded) against the real server on loopback, a real SMTP server capturing the
mail, the day's real papers fetched from the samples. Sign up → read the confirmation e-mail →
open its link → confirm → the manage page → change topics → the preview changes → pause →
unsubscribe → resubscribe → export → delete. At 375 px without JavaScript (every page works
without it) and at 1280 px with it (the preview follows the edits). Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
import re

import pytest

from digest.store.directory import Directory
from digest.store.ledger import Ledger

from .smtp_server import SmtpServer
from .test_centre import serve_centre
from .test_pages import CHROMIUM, browser, check_readable  # noqa: F401  (browser: the fixture)

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.database,
              pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run does)")]


@pytest.fixture
def centre_site(tmp_path):
    with SmtpServer() as smtp:
        server, _, store, _ = serve_centre(tmp_path, smtp, papers=True)
        try:
            host, port = server.server_address[:2]
            yield f"http://{host}:{port}", smtp, store
        finally:
            server.shutdown()


def local(url: str, base: str) -> str:
    """A link from an e-mail (on base_url) pointed at the server under test."""
    return base + url.split("https://digest.example.org", 1)[1]


def preview_text(page) -> str:
    return page.inner_text("#preview")


@pytest.mark.parametrize(("width", "script"), [(375, False), (1280, True)])
def test_sign_up_confirm_manage_pause_unsubscribe_export_delete(centre_site, browser, width, script):  # noqa: F811
    base, smtp, store = centre_site
    name = "centre"
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=script,
                                  accept_downloads=True)
    page = context.new_page()

    # sign up: a preset and a topic of one's own
    page.goto(base + "/subscribe")
    check_readable(page, f"subscribe-{name}")
    page.fill("#email", "ada@example.org")
    page.fill("#name", "Ada")
    page.check("text=Language models")
    page.fill("#topic_name_1", "Agents")
    page.fill("#topic_keywords_1", "agent, tool use")
    page.select_option("#schedule_kind", "weekdays")
    page.fill("#schedule_time", "06:45")
    page.select_option("#timezone", "Europe/Paris")
    with page.expect_navigation():
        page.click("button:has-text('Subscribe')")
    assert "Check your inbox" in page.inner_text("main")
    check_readable(page, f"subscribe-sent-{name}")

    # the confirmation e-mail, its link: GET shows a button, POST confirms
    smtp.wait_for(1)
    mail = smtp.handler.to("ada@example.org")[0]
    text = mail.get_body(("plain",)).get_content()
    assert "Ada" not in text and "Agents" not in text
    link = re.search(r"https://digest\.example\.org/confirm/\S+", text).group(0)
    page.goto(local(link, base))
    assert Directory(store).get(["ada@example.org"]) == {}  # opening the link changed nothing
    check_readable(page, f"confirm-{name}")
    with page.expect_navigation():
        page.click("button:has-text('Confirm my subscription')")
    assert "You are subscribed" in page.inner_text("main")
    row = Directory(store).get(["ada@example.org"])["ada@example.org"]
    assert (row.origin, row.schedule, row.timezone) == ("self", "weekdays 06:45", "Europe/Paris")
    manage = local(page.get_attribute("a:has-text('your manage page')", "href"), base)

    # the manage page: today's digest with these topics; change them and the preview follows
    page.goto(manage)
    check_readable(page, f"manage-{name}")
    before = preview_text(page)
    assert re.search(r"would have had \d+ papers?", before) and "no papers" not in before
    page.uncheck("text=Language models")
    page.fill("#topic_keywords_1", "zzqx-nothing-matches-this")
    if script:  # live, as the person types
        page.wait_for_function("() => document.querySelector('#preview').innerText.includes('no papers')",
                               timeout=10_000)
    else:
        with page.expect_navigation():
            page.click("button:has-text('Preview without saving')")
        assert "not saved yet" in page.inner_text("main")
    assert "no papers" in preview_text(page)
    assert "Language models" in Directory(store).get(["ada@example.org"])["ada@example.org"].profile  # unsaved
    page.fill("#topic_keywords_1", "language model")
    with page.expect_navigation():
        page.click("button:has-text('Save')")
    assert "settings are saved" in page.inner_text("main")
    profile = json.loads(Directory(store).get(["ada@example.org"])["ada@example.org"].profile)
    assert [t["name"] for t in profile["topics"]] == ["Agents"] and profile["topics"][0]["keywords"] == ["language model"]
    assert profile["timezone"] == "Europe/Paris" and profile["schedule"] == "weekdays 06:45"  # the rest kept

    # pause until a day, resume, unsubscribe, resubscribe
    with page.expect_navigation():
        page.click("button:has-text('Pause')")
    assert "paused until" in page.inner_text("main")
    assert "paused_until" in Directory(store).get(["ada@example.org"])["ada@example.org"].profile
    with page.expect_navigation():
        page.click("button:has-text('Unsubscribe')")
    assert not Ledger(store).state("ada@example.org").active
    check_readable(page, f"manage-unsubscribed-{name}")
    with page.expect_navigation():
        page.click("button:has-text('Resubscribe')")
    assert Ledger(store).state("ada@example.org").active

    # export my data
    with page.expect_download() as download:
        page.click("text=Export my data")
    exported = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert exported["email"] == "ada@example.org" and exported["settings"]["topics"][0]["name"] == "Agents"

    # delete me
    with page.expect_navigation():
        page.click("text=Delete me")
    check_readable(page, f"delete-{name}")
    with page.expect_navigation():
        page.click("button:has-text('Delete everything')")
    assert "deleted" in page.inner_text("main").lower()
    assert Directory(store).get(["ada@example.org"]) == {}
    page.goto(manage)
    assert "not valid" in page.inner_text("main")
    context.close()
