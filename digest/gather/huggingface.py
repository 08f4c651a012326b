"""Hugging Face Daily Papers (/api/daily_papers, JSON): the trending signal."""

from __future__ import annotations

import ast
import json
from datetime import datetime
from typing import Any

from ..config import HuggingFaceSource
from ..errors import ParseError
from ..models import Listing, Paper
from .arxiv import paper_links
from .ids import arxiv_id
from .text import html_to_text, title_text, untex

API_URL = "https://huggingface.co/api/daily_papers"


def location(source: HuggingFaceSource) -> str:
    return source.url or f"{API_URL}?limit={source.limit}"


def parse(source: HuggingFaceSource, body: bytes, now: datetime) -> Listing:
    if not body or not body.strip():
        raise ParseError(source.name, "the document is empty", hint="the server or file returned nothing")
    try:
        items = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ParseError(source.name, f"not valid JSON{where}: {getattr(exc, 'msg', exc)}",
                         hint="a huggingface source expects the /api/daily_papers JSON") from None
    if not isinstance(items, list):
        raise ParseError(source.name, f"expected a JSON list of daily papers, got a {type(items).__name__}",
                         hint="a huggingface source expects the /api/daily_papers JSON")
    papers, warnings = [], []
    for index, item in enumerate(items):
        paper = item.get("paper") if isinstance(item, dict) else None
        found = arxiv_id(str(paper.get("id", "")), bare=True) if isinstance(paper, dict) else None
        if not found:
            warnings.append(f"item {index + 1} has no arXiv paper id; skipped")
            continue
        papers.append(_paper(source.name, found[0], item, paper))
    return Listing(tuple(papers), tuple(warnings), None)


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
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


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
