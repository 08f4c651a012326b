"""What one paper from a source may hold, whatever the source sent.

A broken or hostile feed must not put a 200,000-character title in every digest (the e-mail's
size budget then has room for nothing else, render/compose.py `fit`), nor a `javascript:` or
`data:` link in the store, a preview page or a script reading `--format json`. The limits are
far above any real paper's (arXiv takes abstracts of up to 1,920 characters; its longest
titles are about 300), so only such feeds ever meet them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ..models import Listing, Paper

TITLE_CHARS = 1_000
ABSTRACT_CHARS = 20_000  # blogs' feeds carry whole posts: the start is what matching and cards read
SUMMARY_CHARS = 5_000
NAME_CHARS = 200  # an author, a category, a keyword
AUTHORS = 1_000  # collaborations sign with thousands; the card shows three
LISTED = 100  # categories, AI keywords
URL_CHARS = 2_000
LINKS = ("pdf_url", "hf_url", "code_url", "thumbnail")


def web_address(url: str | None) -> bool:
    """Whether `url` is an http(s) address of a sensible length (not javascript:, data:, file:)."""
    if not url or len(url) > URL_CHARS:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def shortened(text: str, limit: int) -> str:
    """`text` cut at the last word boundary before `limit` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def within_bounds(listing: Listing) -> Listing:
    """The listing with papers whose link is not a web address left out, other links that are
    not dropped, and over-long text shortened; each kind of change said once, as a warning."""
    papers: list[Paper] = []
    dropped: list[str] = []
    links = shortened_fields = 0
    for paper in listing.papers:
        if not web_address(paper.url):
            dropped.append(paper.url)
            continue
        changes: dict[str, Any] = {name: None for name in LINKS if getattr(paper, name) and
                                   not web_address(getattr(paper, name))}
        links += bool(changes)
        if not _too_long(paper):  # (most papers: the fields are read, not rebuilt)
            papers.append(replace(paper, **changes) if changes else paper)
            continue
        text = {name: value for name, value in _within_limits(paper).items() if value != getattr(paper, name)}
        shortened_fields += bool(text)
        papers.append(replace(paper, **changes, **text) if changes or text else paper)
    if not dropped and not links and not shortened_fields:
        return listing
    warnings = list(listing.warnings)
    if dropped:
        sample = dropped[0] if len(dropped[0]) <= 60 else dropped[0][:60] + "…"
        warnings.append(f"{_items(len(dropped))} whose link is not a web address (such as {sample!r}): skipped")
    if links:
        warnings.append(f"{_items(links)} with a PDF, code or other link that is not a web address: stored without it")
    if shortened_fields:
        warnings.append(f"{_items(shortened_fields)} with text far longer than a paper's (a title of over "
                        f"{TITLE_CHARS:,} characters, an abstract of over {ABSTRACT_CHARS:,}, …): shortened")
    return replace(listing, papers=tuple(papers), warnings=tuple(warnings))


def _within_limits(paper: Paper) -> dict[str, Any]:
    """Each text field of `paper`, shortened to its limit (most as they are)."""
    return {"title": shortened(paper.title, TITLE_CHARS),
            "abstract": shortened(paper.abstract, ABSTRACT_CHARS),
            "authors": tuple(shortened(a, NAME_CHARS) for a in paper.authors[:AUTHORS]),
            "categories": tuple(shortened(c, NAME_CHARS) for c in paper.categories[:LISTED]),
            "ai_keywords": tuple(shortened(k, NAME_CHARS) for k in paper.ai_keywords[:LISTED]),
            "ai_summary": shortened(paper.ai_summary, SUMMARY_CHARS) if paper.ai_summary else paper.ai_summary,
            "license": shortened(paper.license, NAME_CHARS) if paper.license else paper.license}


def _too_long(paper: Paper) -> bool:
    """Whether any text of `paper` is over its limit."""
    return (len(paper.title) > TITLE_CHARS or len(paper.abstract) > ABSTRACT_CHARS
            or len(paper.ai_summary or "") > SUMMARY_CHARS or len(paper.license or "") > NAME_CHARS
            or len(paper.authors) > AUTHORS or len(paper.categories) > LISTED or len(paper.ai_keywords) > LISTED
            or any(len(name) > NAME_CHARS for name in (*paper.authors, *paper.categories, *paper.ai_keywords)))


def _items(count: int) -> str:
    return f"{count} item{'s' * (count != 1)}"
