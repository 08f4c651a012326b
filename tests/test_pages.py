"""The web pages in a real browser: Playwright driving Debian's chromium (nothing downloaded)
against the real server on loopback, with JavaScript off (every page must work without it),
at phone and desktop widths: no horizontal scrolling, text at least 14 px, contrast at least
4.5:1. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from digest.render.links import unsubscribe_token
from digest.store import Store
from digest.store.ledger import Ledger
from digest.web.unsubscribe import unsubscribe_server

from .conftest import fresh_database

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run does)")

# Per text element: its font size and its contrast with the background it is drawn on.
MEASURE = """() => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                      .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
                               if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3); } return [255, 255, 255]; };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(el))];
    found.push({text: el.textContent.trim().slice(0, 30), size: parseFloat(style.fontSize),
                contrast: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)});
  }
  return {texts: found, scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth};
}"""


@pytest.fixture
def browser():
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def check_readable(page, name: str) -> None:
    measured = page.evaluate(MEASURE)
    width = measured["width"]
    assert measured["scrollWidth"] <= width, f"{name}: horizontal scrolling at {width} px"
    smallest = min(measured["texts"], key=lambda t: t["size"])
    assert smallest["size"] >= 14, f"{name}: text too small at {width} px: {smallest}"
    faintest = min(measured["texts"], key=lambda t: t["contrast"])
    assert faintest["contrast"] >= 4.5, f"{name}: low contrast: {faintest}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}-{width}px.png"), full_page=True)


@pytest.mark.parametrize("width", [375, 1280])
def test_unsubscribe_and_resubscribe_in_a_browser_without_javascript(tmp_path, browser, width):
    store = Store(fresh_database(tmp_path))
    secret, ledger = store.secret(), Ledger(store)
    server = unsubscribe_server("127.0.0.1:0", secret, ledger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=False)
        page = context.new_page()
        page.goto(f"http://{host}:{port}/unsubscribe/{unsubscribe_token(secret, 'ada@example.org')}")
        assert "Stop sending paper digests to ada@example.org?" in page.inner_text("main")
        check_readable(page, "unsubscribe")
        assert ledger.state("ada@example.org").active  # opening the link changed nothing

        with page.expect_navigation():
            page.click("button:has-text('Unsubscribe')")
        assert "will get no more paper digests" in page.inner_text("main")
        assert not ledger.state("ada@example.org").active
        check_readable(page, "unsubscribed")

        with page.expect_navigation():
            page.click("button:has-text('Resubscribe')")
        assert "again" in page.inner_text("main") and ledger.state("ada@example.org").active
        context.close()
    finally:
        server.shutdown()
