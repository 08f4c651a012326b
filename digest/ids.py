"""Canonical identity of a paper: arXiv id without version, else DOI, else normalised link."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# New style (since 2007): YYMM.NNNN or YYMM.NNNNN; old style: archive[.SUB]/YYMMNNN.
_NEW = r"\d{4}\.\d{4,5}"
_OLD = r"[a-z][a-z\-]+(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID = re.compile(rf"(?<![\w.])(?P<id>{_NEW}|{_OLD})(?:v(?P<version>\d+))?(?![\d])")
_ARXIV_CONTEXT = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html)/|oai:arxiv\.org:|arxiv:|huggingface\.co/papers/)\s*",
    re.IGNORECASE,
)
DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)
_TRACKING = re.compile(r"^(utm_|fbclid$|gclid$|mc_)", re.IGNORECASE)


def arxiv_id(text: str | None, *, bare: bool = False) -> tuple[str, int | None] | None:
    """The arXiv id (without version) and version found in a link, OAI id or `arXiv:` label.

    With `bare=True` the text may be the id alone (``2511.01234v2``); otherwise an arXiv
    context (a link to arxiv.org, ``oai:arXiv.org:``, ``arXiv:``) must precede it, so that
    numbers in other links are never taken for ids.
    """
    if not text:
        return None
    if bare:
        match = ARXIV_ID.fullmatch(text.strip())
    else:
        context = _ARXIV_CONTEXT.search(text)
        match = ARXIV_ID.match(text, context.end()) if context else None
    if not match:
        return None
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def doi(text: str | None) -> str | None:
    """A DOI found in the text, lower-cased (DOIs are case-insensitive), without trailing punctuation."""
    if not text:
        return None
    match = DOI.search(text)
    return match.group(1).rstrip(".,;)").lower() if match else None


def normalise_link(url: str) -> str:
    """A link in one canonical spelling: https, lower-case host, no fragment, no tracking query."""
    parts = urlsplit(url.strip())
    scheme = "https" if parts.scheme in ("http", "https", "") else parts.scheme
    host = parts.netloc.lower().removeprefix("www.")
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not _TRACKING.match(k)))
    path = parts.path.rstrip("/") or ""
    return urlunsplit((scheme, host, path, query, ""))


def canonical_id(*, arxiv: str | None = None, doi_value: str | None = None, link: str | None = None) -> str | None:
    """The id a paper is stored under, by the order of preference of the architecture."""
    if arxiv:
        return arxiv
    if doi_value:
        return f"doi:{doi_value}"
    if link:
        return f"url:{normalise_link(link)}"
    return None
