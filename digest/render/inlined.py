"""MJML → HTML → inlined CSS, kept: the chain is a pure function of its input and of the
libraries that run it, and every process that renders runs it over the same five pages (the
template once, to compile it, and four probes, to check the compiled template renders the
same). That is ~0.4 s of each `digest send` or `preview` start-up, and premailer's import.

Results are kept in memory and in the user's cache folder (`$XDG_CACHE_HOME/paper-digest`,
else `~/.cache/paper-digest`), one file per input, named by a hash of the input, of this
chain's code and of the versions of mjml, premailer, cssutils and lxml: an upgrade or an edited
template is a new name, never a stale page. Nothing depends on the folder: read-only or
missing, every process runs the chain as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

from ..kept import cache_home

log = logging.getLogger(__name__)

KEPT_FILES = 256  # pages kept on disk: a template author's edits each add five
_memory: dict[str, str] = {}


def inlined(mjml: str, name: str) -> str:
    """`inline_css(mjml_to_html(mjml, name))`, from memory or the cache folder when run before
    (`name`: the template the MJML came from, for an error's message)."""
    key = hashlib.sha256((_fingerprint() + mjml).encode("utf-8")).hexdigest()
    page = _memory.get(key)
    if page is None:
        folder = cache_folder()
        page = _kept(folder, key) if folder is not None else None
        if page is None:
            from .renderer import inline_css, mjml_to_html

            page = inline_css(mjml_to_html(mjml, name))
            if folder is not None:
                _keep(folder, key, page)
        _memory[key] = page
    return page


def cache_folder() -> Path | None:
    """Where pages are kept; None without a home folder (a user with no passwd entry, say)."""
    home = cache_home()
    return home / "inlined" if home is not None else None


@cache
def _fingerprint() -> str:
    """What the chain's output depends on besides its input: its code and its libraries."""
    versions = []
    for name in ("mjml-python", "premailer", "cssutils", "lxml"):
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=?")
    code = hashlib.sha256(Path(__file__).with_name("renderer.py").read_bytes()).hexdigest()
    return f"{';'.join(versions)};renderer={code}\n"


def _kept(folder: Path, key: str) -> str | None:
    try:
        return (folder / f"{key}.html").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # not kept yet (or unreadable): made again
        return None


def _keep(folder: Path, key: str, page: str) -> None:
    """Written whole or not at all (a temporary file renamed), so processes racing to write the
    same page each leave a complete one; the oldest pages go past KEPT_FILES."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, suffix=".part", delete=False) as out:
            out.write(page)
        os.replace(out.name, folder / f"{key}.html")
        kept = sorted(folder.glob("*.html"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEPT_FILES]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # read-only home, full disk: the next process runs the chain again
        log.debug("could not keep a compiled page in %s: %s", folder, exc)
