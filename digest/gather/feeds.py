"""Shared reading of RSS/Atom documents through feedparser, with errors that say what is wrong."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

import feedparser

from ..errors import ParseError


def parse_feed(source: str, body: bytes) -> tuple[Any, list[str]]:
    """feedparser's result, or ParseError when the document holds no feed at all.

    feedparser is lenient: a malformed document that still yields entries is kept, with a
    warning naming the problem, so one bad character never loses a day of papers.
    """
    if not body or not body.strip():
        raise ParseError(source, "the document is empty", hint="the server or file returned nothing")
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    warnings: list[str] = []
    if not parsed.entries and body.lstrip()[:200].lower().startswith((b"<!doctype html", b"<html")):
        raise ParseError(source, "got an HTML page, not an RSS or Atom feed",
                         hint="check that the url points at the feed itself")
    if parsed.bozo:
        problem = _describe(parsed.get("bozo_exception"))
        if not parsed.entries and not parsed.get("version"):
            raise ParseError(source, f"not a valid RSS or Atom document: {problem}")
        if not parsed.entries:
            raise ParseError(source, f"malformed feed with no readable entries: {problem}")
        warnings.append(f"malformed feed ({problem}); kept the {len(parsed.entries)} entries that could be read")
    elif not parsed.get("version") and not parsed.entries:
        raise ParseError(source, "not an RSS or Atom feed", hint="check that the url points at the feed itself")
    return parsed, warnings


def entry_time(entry: Any, *keys: str) -> datetime | None:
    """The first of the entry's parsed times, as an aware UTC datetime."""
    for key in keys:
        value = entry.get(f"{key}_parsed")
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (ValueError, OverflowError, OSError):  # a date no calendar holds: unknown
                return None
    return None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown problem"
    line = getattr(exc, "getLineNumber", None)
    text = getattr(exc, "getMessage", lambda: str(exc))()
    return f"line {line()}: {text}" if callable(line) else str(text)


def require_papers(source: str, parsed: Any, papers: list[Any]) -> None:
    """A malformed document from which no paper could be read is an error, not a quiet day."""
    if parsed.bozo and parsed.entries and not papers:
        raise ParseError(source, f"not a valid RSS or Atom document: {_describe(parsed.get('bozo_exception'))}")
