"""Hugging Face Daily Papers (/api/daily_papers, JSON): the trending signal."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..config import HuggingFaceSource
from ..errors import ParseError
from ..ids import arxiv_id
from ..models import Listing, Paper
from .arxiv import paper_links
from .text import html_to_text, title_text, untex

API_URL = "https://huggingface.co/api/daily_papers"


def location(source: HuggingFaceSource) -> str:
    return source.url or f"{API_URL}?limit={source.limit}"


def parse(source: HuggingFaceSource, body: bytes, now: datetime) -> Listing:
    if not body or not body.strip():
        raise ParseError(source.name, "the document is empty", hint="the server or file returned nothing")
    try:
        items = list(json_array_items(body.decode("utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ParseError(source.name, f"not valid JSON{where}: {getattr(exc, 'msg', exc)}",
                         hint="a huggingface source expects the /api/daily_papers JSON") from None
    except NotAList as exc:
        raise ParseError(source.name, f"expected a JSON list of daily papers, got {exc}",
                         hint="a huggingface source expects the /api/daily_papers JSON") from None
    papers, skipped = [], []
    for index, item in enumerate(items, 1):
        if isinstance(item, BadItem):
            skipped.append(f"item {index}: {item.reason}")
            continue
        paper = item.get("paper") if isinstance(item, dict) else None
        found = arxiv_id(str(paper.get("id", "")), bare=True) if isinstance(paper, dict) else None
        if not found:
            skipped.append(f"item {index}: no arXiv paper id")
            continue
        try:
            papers.append(_paper(source.name, found[0], item, paper))
        except (TypeError, ValueError, AttributeError, RecursionError) as exc:  # one odd item, not the source
            skipped.append(f"item {index}: {exc.__class__.__name__}: {str(exc)[:80]}")
    warnings = []
    if skipped:
        warnings.append(f"{len(papers)} papers, {len(skipped)} item{'s' * (len(skipped) > 1)} skipped: "
                        + "; ".join(skipped[:3]) + (f"; +{len(skipped) - 3} more" if len(skipped) > 3 else ""))
    return Listing(tuple(papers), tuple(warnings), None)


class NotAList(ValueError):
    """The document's top level is not a JSON array."""


class BadItem:
    """An item of the array that could not be read (too deep, a number too long, not JSON)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _bounded_int(text: str) -> int | None:
    # A count of upvotes has no business with 19 digits; Python refuses to read over 4,300.
    return int(text) if len(text.lstrip("-")) <= 18 else None


_DECODER = json.JSONDecoder(parse_int=_bounded_int)
_SPACE = re.compile(r"\s*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def json_array_items(text: str) -> Iterator[Any]:
    """The items of a top-level JSON array, each decoded on its own: an item too deep to decode,
    or with a number too long, is yielded as a BadItem and the others are kept."""
    position = _SPACE.match(text).end()  # type: ignore[union-attr]
    if not text.startswith("[", position):
        value = json.loads(text)  # a JSON error, or a JSON value that is not a list
        raise NotAList(f"a {type(value).__name__}")
    position = _SPACE.match(text, position + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", position):
        return
    while True:
        try:
            item, end = _DECODER.raw_decode(text, position)
        except (RecursionError, ValueError) as exc:
            if isinstance(exc, json.JSONDecodeError) and exc.pos != position and not _nested(text, position):
                raise
            end = _end_of_value(text, position)
            item = BadItem("too deeply nested" if isinstance(exc, RecursionError) else f"unreadable: {exc}"[:80])
        yield item
        end = _SPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith("]", end):
            return
        if not text.startswith(",", end):
            raise json.JSONDecodeError("expected ',' or ']' between items", text, end)
        position = _SPACE.match(text, end + 1).end()  # type: ignore[union-attr]


def _nested(text: str, position: int) -> bool:
    return text.startswith(("[", "{"), position)


def _end_of_value(text: str, position: int) -> int:
    """Where the array item starting at `position` ends (brackets balanced, strings skipped)."""
    depth = 0
    for token in _TOKEN.finditer(text, position):
        mark = token.group()
        if mark in "[{":
            depth += 1
        elif mark in "]}":
            if depth == 0:
                return token.start()
            depth -= 1
            if depth == 0:
                return token.end()
        elif mark == "," and depth == 0:
            return token.start()
    raise json.JSONDecodeError("an item never ends", text, position)


def _paper(source: str, ident: str, item: dict[str, Any], paper: dict[str, Any]) -> Paper:
    published = _time(paper.get("publishedAt")) or _time(item.get("publishedAt"))
    return Paper(
        id=ident,
        title=title_text(paper.get("title") or item.get("title")),
        authors=tuple(n for a in paper.get("authors") or [] if isinstance(a, dict) and (n := untex(a.get("name")))),
        abstract=html_to_text(paper.get("summary") or item.get("summary")),
        published=published,
        hf_url=f"https://huggingface.co/papers/{ident}",
        code_url=paper.get("githubRepo") or None,
        upvotes=_int(paper.get("upvotes")),
        comments=_int(item.get("numComments")),
        ai_summary=html_to_text(paper.get("ai_summary")) or None,
        ai_keywords=_keywords(paper.get("ai_keywords")),
        thumbnail=item.get("thumbnail") or None,
        sources=(source,),
        **paper_links(ident),
    )


def _int(value: Any) -> int | None:
    """A count (upvotes, comments): a whole number from 0 to a billion, else unknown."""
    try:
        number = int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and 0 <= number <= 1_000_000_000 else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _keywords(value: Any) -> tuple[str, ...]:
    # The API gives a list; some captures hold its Python repr as a string.
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(str(v).strip() for v in value if str(v).strip())
