"""The e-mail in a real browser (Debian's chromium, headless) at phone and desktop widths:
no horizontal scrolling, no text too small to read, text contrast at least 4.5:1. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_render import both, make_digest, paper

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run does)")

PROBE = r"""<script>
(() => {
  const sizes = [];
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || el.closest('.preheader')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (own) sizes.push([parseFloat(style.fontSize), el.tagName, el.textContent.trim().slice(0, 40)]);
  }
  const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                       .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
                               if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3); } return [255, 255, 255]; };
  let lowest = [99, ''];
  for (const el of document.body.querySelectorAll('*')) {
    if (getComputedStyle(el).display === 'none' || el.closest('.preheader')) continue;
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color).slice(0, 3)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < lowest[0]) lowest = [ratio, el.tagName + ' ' + el.textContent.trim().slice(0, 30)];
  }
  const root = document.documentElement;
  parent.postMessage(JSON.stringify({scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
                                     innerWidth: window.innerWidth, smallest: sizes.sort((a, b) => a[0] - b[0])[0],
                                     contrast: lowest}), '*');
})();
</script>"""
# Headless windows are at least 500 px wide: the e-mail is measured in an iframe of the width.
HOST = """<!doctype html><html><body style="margin:0"><iframe src="email.html" width="{width}" height="{height}"
style="border:0;display:block"></iframe><pre id="probe-result"></pre><script>
window.addEventListener('message', e => {{ document.getElementById('probe-result').textContent = e.data; }});
</script></body></html>"""


def chromium(*args: str) -> str:
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--no-first-run", "--disable-dev-shm-usage", *args],
                            capture_output=True, text=True, timeout=120)
    return result.stdout


@pytest.mark.parametrize("width, scheme", [(375, "light"), (600, "light"), (375, "dark")])
def test_email_fits_the_screen_and_is_readable(tmp_path, width, scheme):
    long_words = "Supercalifragilisticexpialidocious-" * 4
    papers = [paper(n, title=f"Paper {n}: {long_words if n == 1 else 'A readable title about KV caches'}",
                    upvotes=n, hf_url=f"https://huggingface.co/papers/2611.{n:05d}",
                    code_url="https://github.com/" + "very-long-organisation-name/" * 3 + "repo",
                    authors=tuple(f"Author With A Long Name {i}" for i in range(12))) for n in range(1, 13)]
    _, email_ = both(make_digest(papers, topics=("Efficient inference", "Trending")))
    (tmp_path / "email.html").write_text(email_.html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    host = tmp_path / "host.html"
    host.write_text(HOST.format(width=width, height=900), encoding="utf-8")
    dark = ["--force-dark-mode"] if scheme == "dark" else []
    dom = chromium(*dark, "--window-size=800,1000", "--virtual-time-budget=5000", "--dump-dom", host.as_uri())
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dom)
    assert found, dom[-500:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["innerWidth"] == width
    assert result["scrollWidth"] <= result["clientWidth"], f"horizontal overflow at {width}px: {result}"
    assert result["smallest"][0] >= 12, f"text too small at {width}px: {result['smallest']}"
    assert result["contrast"][0] >= 4.5, f"low contrast: {result['contrast']}"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"email-{width}px-{scheme}.png"
    (ARTIFACTS / "email.html").write_text(email_.html, encoding="utf-8")
    host.write_text(HOST.format(width=width, height=2400), encoding="utf-8")
    chromium(*dark, f"--window-size={max(width, 600)},2400", "--virtual-time-budget=3000", f"--screenshot={shot}",
             host.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
