"""Why a paper is in a digest, in one line: `matched "KV cache" in title; 42 upvotes`."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from .weights import TITLE

if TYPE_CHECKING:
    from ..models import Paper
    from .topics import Found


def explain(found: Found, paper: Paper) -> str:
    return _explain(found, paper.upvotes)


@lru_cache(maxsize=65_536)  # the same few terms and upvote counts recur across topics and papers
def _explain(found: Found, upvotes: int | None) -> str:
    parts: list[str] = []
    distinct = list(dict.fromkeys(found.terms))
    ordered = [t for t in distinct if t[1] & TITLE] + [t for t in distinct if not t[1] & TITLE]
    shown = [f'"{text}" in {"title" if bits & TITLE else "abstract"}' for text, bits in ordered[:3]]
    if shown:
        parts.append("matched " + ", ".join(shown) + (f" (+{len(ordered) - 3} more)" if len(ordered) > 3 else ""))
    if found.authors:
        parts.append("by " + ", ".join(dict.fromkeys(found.authors)))
    if found.categories and not shown and not found.authors:
        parts.append("in " + ", ".join(dict.fromkeys(found.categories)))
    if upvotes:
        parts.append(f"{upvotes} upvote{'s' * (upvotes != 1)}")
    return "; ".join(parts)
