"""An arXiv API search (export.arxiv.org/api/query, Atom), newest submissions first."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from ..config import ArxivApiSource
from ..errors import ParseError
from ..ids import arxiv_id, doi
from ..models import Listing, Paper
from .arxiv import paper_links
from .feeds import entry_time, parse_feed, require_papers
from .text import html_to_text, squash, title_text, untex

API_URL = "https://export.arxiv.org/api/query"


def location(source: ArxivApiSource) -> str:
    if source.url:
        return source.url
    query = urlencode({"search_query": source.query, "sortBy": "submittedDate",
                       "sortOrder": "descending", "start": 0, "max_results": source.max_results})
    return f"{API_URL}?{query}"


def parse(source: ArxivApiSource, body: bytes, now: datetime) -> Listing:
    feed, warnings = parse_feed(source.name, body)
    papers: list[Paper] = []
    for index, entry in enumerate(feed.entries):
        entry_id = entry.get("id", "")
        if "/api/errors" in entry_id:
            raise ParseError(source.name, f"arXiv rejected the query: {squash(entry.get('summary'))}",
                             hint="check the query of this source against arXiv's API syntax")
        found = arxiv_id(entry_id) or arxiv_id(entry.get("link"))
        if not found:
            warnings.append(f"entry {index + 1} has no arXiv id; skipped")
            continue
        ident, version = found
        primary = (entry.get("arxiv_primary_category") or {}).get("term")
        categories = [squash(t["term"]) for t in entry.get("tags", []) if t.get("term")]
        if primary:
            categories = [primary, *[c for c in categories if c != primary]]
        papers.append(Paper(
            id=ident,
            title=title_text(entry.get("title")),
            authors=tuple(n for a in entry.get("authors", []) if (n := untex(a.get("name")))),
            abstract=html_to_text(entry.get("summary")),
            categories=tuple(categories),
            published=entry_time(entry, "published", "updated"),
            doi=doi(entry.get("arxiv_doi")),
            version=version,
            sources=(source.name,),
            **paper_links(ident),
        ))
    require_papers(source.name, feed, papers)
    return Listing(tuple(papers), tuple(warnings), entry_time(feed.feed, "updated"))
