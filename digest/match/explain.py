"""Why a paper is in a digest, in one line: `matched "KV cache" in title; 42 upvotes`."""

from __future__ import annotations

from functools import lru_cache

from .weights import TITLE


@lru_cache(maxsize=65_536)  # the same few terms and upvote counts recur across topics and papers
def explain(terms: tuple[tuple[str, int], ...], authors: tuple[str, ...], categories: tuple[str, ...],
            upvotes: int | None) -> str:
    """What a paper matched of a topic (terms with their TITLE|ABSTRACT bits, authors,
    categories) and its upvotes, in one line."""
    parts: list[str] = []
    distinct = list(dict.fromkeys(terms))
    ordered = [t for t in distinct if t[1] & TITLE] + [t for t in distinct if not t[1] & TITLE]
    shown = [f'"{text}" in {"title" if bits & TITLE else "abstract"}' for text, bits in ordered[:3]]
    if shown:
        parts.append("matched " + ", ".join(shown) + (f" (+{len(ordered) - 3} more)" if len(ordered) > 3 else ""))
    if authors:
        parts.append("by " + ", ".join(dict.fromkeys(authors)))
    if categories and not shown and not authors:
        parts.append("in " + ", ".join(dict.fromkeys(categories)))
    if upvotes:
        parts.append(f"{upvotes} upvote{'s' * (upvotes != 1)}")
    return "; ".join(parts)
