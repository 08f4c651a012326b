"""Plain, immutable values handed from one stage to the next."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

VERSION = "0.1.0"  # the package's version, also in every request's User-Agent


@dataclass(frozen=True)
class Paper:
    """A paper as one source saw it, or as the store merged it from several.

    `id` is canonical: the arXiv id without version (``2511.01234``, ``hep-th/9901001``),
    else ``doi:10.…``, else ``url:`` and the normalised link.
    """

    id: str
    title: str
    url: str
    authors: tuple[str, ...] = ()
    abstract: str = ""
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    first_seen_at: datetime | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    license: str | None = None
    doi: str | None = None
    version: int | None = None
    announce_type: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    thumbnail: str | None = None
    sources: tuple[str, ...] = ()

    def __hash__(self) -> int:
        # Papers key the render caches; hashing all 21 fields cost more than the lookup saved.
        # Equal papers share id and title, so equal hashes (equality still compares all).
        return hash((self.id, self.title))

    def merged_with(self, newer: Paper) -> Paper:
        """Combine what two sources know of one paper.

        Descriptive fields keep the first non-empty value (the record stays stable across
        fetches); counters that change over time (upvotes, comments) take the newer
        value when it has one; lists are unions in first-seen order.
        """

        def first(a, b):  # type: ignore[no-untyped-def]
            return a if a not in (None, "", ()) else b

        def fresh(a, b):  # type: ignore[no-untyped-def]
            return b if b is not None else a

        seen = [self.first_seen_at, newer.first_seen_at]
        known = [t for t in seen if t is not None]
        return replace(
            self,
            title=first(self.title, newer.title),
            url=first(self.url, newer.url),
            authors=first(self.authors, newer.authors),
            abstract=first(self.abstract, newer.abstract),
            categories=_union(self.categories, newer.categories),
            published=first(self.published, newer.published),
            first_seen_at=min(known) if known else None,
            pdf_url=first(self.pdf_url, newer.pdf_url),
            hf_url=first(self.hf_url, newer.hf_url),
            code_url=first(self.code_url, newer.code_url),
            license=first(self.license, newer.license),
            doi=first(self.doi, newer.doi),
            version=max((v for v in (self.version, newer.version) if v), default=None),
            announce_type=first(self.announce_type, newer.announce_type),
            upvotes=fresh(self.upvotes, newer.upvotes),
            comments=fresh(self.comments, newer.comments),
            ai_summary=fresh(self.ai_summary, newer.ai_summary),
            ai_keywords=newer.ai_keywords or self.ai_keywords,
            thumbnail=fresh(self.thumbnail, newer.thumbnail),
            sources=_union(self.sources, newer.sources),
        )


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))


@dataclass(frozen=True)
class Validators:
    """What a server said of a document last time (HTTP ETag, Last-Modified), sent back so an
    unchanged feed costs a 304."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Listing:
    """What one source's document held: its papers, and anything worth a warning."""

    papers: tuple[Paper, ...]
    warnings: tuple[str, ...] = ()
    listing_date: datetime | None = None


@dataclass(frozen=True)
class SourceReport:
    """The outcome of fetching one source: counts, or the error that stopped it."""

    source: str
    fetched: int = 0
    new: int = 0
    merged: int = 0
    not_modified: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One paper in a digest: the paper, its rank score, why it is there, and where else it fits."""

    paper: Paper
    score: float
    why: str
    matched_terms: tuple[str, ...] = ()
    also_in: tuple[str, ...] = ()

    @classmethod
    def made(cls, paper: Paper, score: float, why: str, matched_terms: tuple[str, ...], also_in: tuple[str, ...]) -> DigestEntry:
        """The same as the constructor, faster (its frozen __init__ sets each field through
        object.__setattr__): the matcher makes hundreds of thousands. A field added to the
        class is added here too (tests/test_matching.py compares the two)."""
        entry = _new(cls)
        _set_paper(entry, paper)
        _set_score(entry, score)
        _set_why(entry, why)
        _set_matched_terms(entry, matched_terms)
        _set_also_in(entry, also_in)
        return entry


_new = object.__new__
_set_paper, _set_score, _set_why, _set_matched_terms, _set_also_in = (
    getattr(DigestEntry, name).__set__ for name in ("paper", "score", "why", "matched_terms", "also_in"))


@dataclass(frozen=True)
class Section:
    topic: str
    entries: tuple[DigestEntry, ...]
    omitted: int = 0  # matched this topic but cut by the limits
    trending: bool = False


@dataclass(frozen=True)
class Digest:
    """What one subscriber receives: sections in the subscriber's topic order, then Trending."""

    subscriber: str
    name: str | None
    generated_at: datetime
    since: datetime
    sections: tuple[Section, ...]
    omitted: int = 0

    @property
    def papers(self) -> list[Paper]:
        return [e.paper for s in self.sections for e in s.entries]

    @property
    def is_empty(self) -> bool:
        return not any(s.entries for s in self.sections)
