"""arXiv's daily listing (rss.arxiv.org, RSS or Atom) for one or more categories."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ..config import ArxivSource
from ..errors import ParseError
from ..ids import arxiv_id
from ..models import Listing, Paper
from .feeds import entry_time, parse_feed, require_papers
from .text import html_to_text, split_authors, squash, title_text

ARXIV_TZ = ZoneInfo("America/New_York")
_DESCRIPTION = re.compile(
    r"^\s*arXiv:(?P<id>\S+?)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?(?P<abstract>.*)$",
    re.DOTALL,
)
_SKIP_DAYS = re.compile(rb"<skipDays>(.*?)</skipDays>", re.DOTALL | re.IGNORECASE)
_DAY = re.compile(rb"<day>\s*(\w+)\s*</day>", re.IGNORECASE)
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# arXiv posts the new listing around midnight US Eastern; give it this long before calling it late.
PUBLISH_GRACE = timedelta(hours=3)


def location(source: ArxivSource) -> str:
    return source.url or f"https://rss.arxiv.org/{source.format}/{'+'.join(source.categories)}"


def paper_links(arxiv: str) -> dict[str, str]:
    return {"url": f"https://arxiv.org/abs/{arxiv}", "pdf_url": f"https://arxiv.org/pdf/{arxiv}"}


def parse(source: ArxivSource, body: bytes, now: datetime) -> Listing:
    feed, warnings = parse_feed(source.name, body)
    keep = set(source.announce_types)
    papers: list[Paper] = []
    skipped: dict[str, int] = {}
    for index, entry in enumerate(feed.entries):
        description = entry.get("summary", "")
        match = _DESCRIPTION.match(description)
        found = arxiv_id(entry.get("id")) or arxiv_id(entry.get("link")) or (
            arxiv_id(match.group("id"), bare=True) if match else None)
        if not found:
            warnings.append(f"entry {index + 1} has no arXiv id; skipped")
            continue
        ident, version = found
        kind = (entry.get("arxiv_announce_type") or (match.group("type") if match else "new")).strip().lower()
        if kind not in keep:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        abstract = match.group("abstract") if match else description
        papers.append(Paper(
            id=ident,
            title=title_text(entry.get("title")),
            authors=split_authors(entry.get("author")),
            abstract=html_to_text(abstract),
            categories=tuple(squash(t["term"]) for t in entry.get("tags", []) if t.get("term")),
            published=entry_time(entry, "published", "updated"),
            license=entry.get("rights") or None,
            version=version,
            announce_type=kind,
            sources=(source.name,),
            **paper_links(ident),
        ))
    require_papers(source.name, feed, papers)
    listing_date = _listing_date(feed)
    stale = staleness(listing_date, _skip_days(body), now) if source.warn_stale else None
    if stale:
        warnings.append(stale)
    if skipped:
        warnings.append("left out by announce_types: " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())))
    if not feed.entries and not listing_date:
        raise ParseError(source.name, "the document is a feed but not an arXiv listing (no date, no entries)")
    return Listing(tuple(papers), tuple(warnings), listing_date)


def _listing_date(feed) -> datetime | None:  # type: ignore[no-untyped-def]
    return entry_time(feed.feed, "published", "updated")


def _skip_days(body: bytes) -> set[int]:
    block = _SKIP_DAYS.search(body)
    if not block:
        return {5, 6}  # arXiv announces nothing on Saturday and Sunday
    return {_WEEKDAYS.index(d.decode().lower()) for d in _DAY.findall(block.group(1))
            if d.decode().lower() in _WEEKDAYS}


def expected_listing_day(now: datetime, skip_days: set[int]) -> date:
    """The newest day arXiv should have a listing for at `now` (US Eastern), outside skipDays."""
    day = (now.astimezone(ARXIV_TZ) - PUBLISH_GRACE).date()
    for _ in range(7):
        if day.weekday() not in skip_days:
            return day
        day -= timedelta(days=1)
    return day


def staleness(listing_date: datetime | None, skip_days: set[int], now: datetime) -> str | None:
    """A warning when the listing is older than the day it should be: not a quiet day, a stale feed."""
    if listing_date is None:
        return None
    listed = listing_date.astimezone(ARXIV_TZ).date()
    expected = expected_listing_day(now, skip_days)
    if listed < expected:
        return (f"stale listing: dated {listed.isoformat()} but arXiv should have announced "
                f"{expected.isoformat()} by now (an arXiv holiday, or the feed is lagging); "
                "its papers are kept, and the next fetch will look again (`warn_stale: false` on the "
                "source for a saved copy)")
    return None
