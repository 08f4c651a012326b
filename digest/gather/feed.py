"""Any RSS or Atom feed (journals, blogs, bioRxiv), through feedparser."""

from __future__ import annotations

from datetime import datetime

from ..config import FeedSource
from ..ids import arxiv_id, canonical_id, doi
from ..models import Listing, Paper
from .arxiv import paper_links
from .feeds import entry_time, parse_feed, require_papers
from .text import html_to_text, split_authors, squash, title_text, untex


def location(source: FeedSource) -> str:
    return source.url


def parse(source: FeedSource, body: bytes, now: datetime) -> Listing:
    feed, warnings = parse_feed(source.name, body)
    papers: list[Paper] = []
    for index, entry in enumerate(feed.entries):
        link = entry.get("link") or ""
        found = arxiv_id(link) or arxiv_id(entry.get("id"))
        doi_value = None if found else (
            doi(entry.get("prism_doi")) or doi(entry.get("dc_identifier")) or doi(link) or doi(entry.get("id")))
        ident = canonical_id(arxiv=found[0] if found else None, doi_value=doi_value,
                             link=link or (entry.get("id") if "://" in entry.get("id", "") else None))
        title = title_text(entry.get("title"))
        if not ident or not title:
            warnings.append(f"entry {index + 1} has no link or no title; skipped")
            continue
        links = paper_links(found[0]) if found else {"url": link or entry.get("id", "")}
        papers.append(Paper(
            id=ident,
            title=title,
            authors=_authors(entry),
            abstract=html_to_text(_content(entry)),
            categories=tuple(squash(t["term"]) for t in entry.get("tags", []) if t.get("term")),
            published=entry_time(entry, "published", "updated"),
            doi=doi_value,
            version=found[1] if found else None,
            license=entry.get("rights") or None,
            sources=(source.name,),
            **links,
        ))
    require_papers(source.name, feed, papers)
    return Listing(tuple(papers), tuple(warnings), entry_time(feed.feed, "updated", "published"))


def _authors(entry) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    names = [a.get("name") for a in entry.get("authors", []) if a.get("name")]
    if len(names) == 1 and "," in names[0]:
        return split_authors(names[0])
    return tuple(n for name in names if (n := untex(html_to_text(name))))  # "<b>Evil</b>" showed as it was


def _content(entry) -> str:  # type: ignore[no-untyped-def]
    if entry.get("summary"):
        return entry["summary"]
    content = entry.get("content") or []
    return content[0].get("value", "") if content else ""
