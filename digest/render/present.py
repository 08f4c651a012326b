"""A digest as data: its subject line and its JSON shape (scripts read these names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..models import Digest

LIST_NAME = "Paper digest"  # the default of sender.list_name


def local_date(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%b} {local.day}"


def subject_line(digest: Digest, timezone: str = "UTC", *, list_name: str = LIST_NAME, max_topics: int = 3) -> str:
    """`Paper digest · Nov 22 · 8 new: Efficient inference (5), Data selection (3)`, the list's name first."""
    head = f"{list_name} · {local_date(digest.generated_at, timezone)}"
    total = len(digest.papers)
    if not total:
        return f"{head} · nothing new"
    named = [f"{s.topic} ({len(s.entries)})" for s in digest.sections if s.entries]
    listed = ", ".join(named[:max_topics]) + (f", +{len(named) - max_topics} more" if len(named) > max_topics else "")
    return f"{head} · {total} new: {listed}"


def digest_json(digest: Digest, timezone: str = "UTC", list_name: str = LIST_NAME) -> dict[str, Any]:
    return {
        "subscriber": digest.subscriber,
        "subject": subject_line(digest, timezone, list_name=list_name),
        "generated_at": digest.generated_at.isoformat(),
        "since": digest.since.isoformat(),
        "sections": [
            {
                "topic": section.topic,
                "omitted": section.omitted,
                "papers": [
                    {
                        "id": e.paper.id,
                        "title": e.paper.title,
                        "url": e.paper.url,
                        "authors": list(e.paper.authors),
                        "categories": list(e.paper.categories),
                        "score": e.score,
                        "upvotes": e.paper.upvotes,
                        "why": e.why,
                        "also_in": list(e.also_in),
                        "matched": list(e.matched_terms),
                        "first_seen_at": e.paper.first_seen_at.isoformat() if e.paper.first_seen_at else None,
                    }
                    for e in section.entries
                ],
            }
            for section in digest.sections
        ],
        "omitted": digest.omitted,
    }
