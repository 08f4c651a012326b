"""Cleaning text from feeds: whitespace, TeX, and HTML turned into plain text."""

from __future__ import annotations

import html
import re
from functools import lru_cache

import nh3
from pylatexenc.latex2text import LatexNodes2Text

_SPACE = re.compile(r"\s+")
# A bare % starts a TeX comment and a bare & is an alignment tab: in feed text both are literal.
_BARE_TEX_SPECIAL = re.compile(r"(?<!\\)([%&#])")
_EM_DASH = re.compile(r"(?<![-\w])---(?![-\w])|(?<=\w)---(?=\w)")
_EN_DASH = re.compile(r"(?<![-\w])--(?![-\w])|(?<=\w)--(?=\w)")


def squash(text: str | None) -> str:
    """Collapse runs of whitespace (feeds wrap titles across lines) and trim."""
    return _SPACE.sub(" ", text or "").strip()


@lru_cache(maxsize=1)
def _latex() -> LatexNodes2Text:
    return LatexNodes2Text(math_mode="text", strict_latex_spaces=False)


def untex(text: str | None) -> str:
    r"""TeX accents and simple macros as Unicode: ``Andr\'e`` → ``André``, ``$\chi^2$`` → ``χ^2``.

    Only text that holds TeX (a backslash or a dollar) goes through the converter, so plain
    text is never altered by it.
    """
    text = squash(text)
    if "--" in text:  # TeX's dashes: -- an en dash (ranges, "A -- B"), --- an em dash
        text = _EN_DASH.sub("–", _EM_DASH.sub("—", text))
    if "\\" not in text and "$" not in text:
        return text
    try:
        return squash(_latex().latex_to_text(_BARE_TEX_SPECIAL.sub(r"\\\1", text)))
    except Exception:  # noqa: BLE001 - malformed TeX: keep the text as the feed wrote it
        return text


def html_to_text(fragment: str | None) -> str:
    """Plain text of an HTML fragment: tags dropped, scripts and styles removed, entities decoded."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return squash(fragment)
    cleaned = nh3.clean(fragment, tags=set(), clean_content_tags={"script", "style"})
    return squash(html.unescape(cleaned))


def title_text(raw: str | None) -> str:
    """A title as a reader should see it: markup removed, TeX decoded, one line."""
    return untex(html_to_text(raw))


def split_authors(creators: str | None) -> tuple[str, ...]:
    r"""Authors from arXiv's single ``dc:creator`` string: comma-separated, TeX accents decoded."""
    if not creators:
        return ()
    text = html_to_text(creators)
    parts = re.split(r",|\band\b(?![^{]*})", text)
    return tuple(name for part in parts if (name := untex(part)))
