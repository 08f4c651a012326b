"""The rating page in a real browser (Playwright driving Debian's chromium, as test_pages.py):
without JavaScript it asks and the button records; with JavaScript it records by itself, once
(coming back to the page after Undo records nothing again); the pages and the manage page's
list of ratings readable at phone and desktop widths. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from digest.store.ratings import Ratings

from .test_centre import site as centre_site  # noqa: F401 - the fixture: the centre on its real server
from .test_centre import subscribed
from .test_pages import CHROMIUM, browser, check_readable  # noqa: F401  (browser: the fixture)
from .test_ratings import rate_path, stored_paper

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.database,
              pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run does)")]


@pytest.mark.parametrize(("width", "script"), [(375, False), (1280, True)])
def test_rating_in_a_browser(centre_site, browser, width, script):  # noqa: F811
    site = centre_site
    _, manage = subscribed(site)
    stored_paper(site, title="A rather long title about " + "sparse attention for long KV caches, " * 3)
    ratings = Ratings(site.store)
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=script)
    page = context.new_page()
    path = rate_path(site, "me@example.org", "2611.00042", -1)
    page.goto(site.base + path)
    if not script:
        assert "Not for me?" in page.inner_text("main")
        check_readable(page, "rate-ask")
        assert ratings.of("me@example.org") == []  # opening the link recorded nothing
        with page.expect_navigation():
            page.click("button:has-text('Not for me')")
    page.wait_for_selector("text=Thanks")
    assert "your next digests will have fewer papers like this" in page.inner_text("main")
    check_readable(page, f"rated-{'script' if script else 'plain'}")
    assert [(r.paper, r.value) for r in ratings.of("me@example.org")] == [("2611.00042", -1)]

    with page.expect_navigation():
        page.click("button:has-text('Undo')")
    assert "Undone" in page.inner_text("main") and ratings.of("me@example.org") == []
    page.goto(site.base + path)  # the link again in this tab: it asks, and records nothing by itself
    page.wait_for_timeout(300)
    assert "Not for me?" in page.inner_text("main") and ratings.of("me@example.org") == []

    with page.expect_navigation():
        page.click("button:has-text('Not for me')")
    page.goto(site.base + manage)
    assert "Papers you rated" in page.inner_text("main") and "not for me" in page.inner_text("main")
    check_readable(page, f"manage-rated-{width}")
    with page.expect_navigation():
        page.click("button:has-text('Remove')")
    assert "Rating removed." in page.inner_text("main") and ratings.of("me@example.org") == []
