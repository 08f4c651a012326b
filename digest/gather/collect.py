"""Gather: fetch every source, parse it, store its papers. One source failing never stops another."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config import Config
from ..errors import BadArgument, DigestError, SourceError
from ..models import Listing, SourceReport
from ..store.database import Store
from .adapters import adapter
from .bounds import within_bounds
from .categories import fill_categories
from .http import Fetcher, default_user_agent, is_local
from .parse_worker import parse_isolated

log = logging.getLogger(__name__)

Progress = Callable[[SourceReport], None]


def source_location(config: Config, source: Any) -> str:
    """Where the source's document is: its configured url (local paths relative to the config) or the default."""
    location = adapter(source).location(source)
    return config.resolve_local(location) if is_local(location) else location


def select_sources(config: Config, names: Sequence[str] = ()) -> list[Any]:
    """The enabled sources, or those named; an unknown name is a user error with a suggestion."""
    if not names:
        return [s for s in config.sources if s.enabled]
    known = {s.name: s for s in config.sources}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadArgument(f"unknown source {unknown[0]!r}",
                          hint=f"configured sources: {', '.join(known) or 'none'}")
    return [known[n] for n in names]


EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # before any preprint server; "0001-01-01" is a placeholder
LATEST_AHEAD = timedelta(days=3)  # time zones and early announcements, not more


def plausible_dates(listing: Listing, now: datetime) -> Listing:
    """Publication dates outside [1990, now + 3 days] are placeholders or mistakes (undated
    pages say "Mon, 01 Jan 0001"): kept as unknown, with a warning, never stored as dates."""
    odd = {i for i, p in enumerate(listing.papers)
           if p.published is not None and not EARLIEST <= p.published <= now + LATEST_AHEAD}
    if not odd:
        return listing
    sample = listing.papers[min(odd)].published.date().isoformat()  # type: ignore[union-attr]
    warning = (f"{len(odd)} item{'s' * (len(odd) > 1)} with an impossible date (such as {sample}): "
               "stored without a date")
    papers = tuple(replace(p, published=None) if i in odd else p for i, p in enumerate(listing.papers))
    return replace(listing, papers=papers, warnings=(*listing.warnings, warning))


def fetch_one(config: Config, store: Store, fetcher: Fetcher, source: Any, now: datetime) -> SourceReport:
    location = source_location(config, source)
    deadline = time.monotonic() + source.deadline  # the whole download and the parse
    try:
        state = store.fetch_state(source.name)
        document = fetcher.get(
            source.name, location, timeout=source.timeout, max_bytes=source.max_bytes,
            validators=state.validators_for(location),
            min_interval=getattr(source, "request_interval", 0.0), deadline=deadline,
        )
        if document.not_modified:
            store.record_fetch(source.name, now, location=location, validators=document.validators)
            return SourceReport(source.name, not_modified=True)
        parsed = parse_isolated(source, document.body or b"", now, deadline=deadline, stop=fetcher.stop)
        listing = within_bounds(plausible_dates(parsed, now))
        if getattr(source, "fill_categories", False) and not is_local(location):
            listing = fill_categories(listing, name=source.name, url=source.categories_url, store=store,
                                      fetcher=fetcher, timeout=source.timeout, now=now)
        saved = store.save_listing(source.name, listing, now, location=location, validators=document.validators)
        for warning in listing.warnings:
            log.warning("%s: %s", source.name, warning)
        return SourceReport(source.name, fetched=saved.fetched, new=saved.new, merged=saved.merged,
                            warnings=listing.warnings)
    except SourceError as exc:
        error = exc.message.removeprefix(f"{source.name}: ") + (f" ({exc.hint})" if exc.hint else "")
    except DigestError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not stop the others
        log.exception("%s: unexpected error", source.name)
        error = f"unexpected error: {exc.__class__.__name__}: {exc}"
    log.error("%s: %s", source.name, error)
    try:
        store.record_fetch(source.name, now, location=location, error=error)
    except DigestError:
        pass
    return SourceReport(source.name, error=error)


def gather(
    config: Config,
    store: Store,
    *,
    names: Sequence[str] = (),
    fetcher: Fetcher | None = None,
    now: datetime | None = None,
    on_report: Progress | None = None,
    workers: int = 4,
    stop: threading.Event | None = None,
) -> list[SourceReport]:
    """Fetch the sources (in parallel threads) and store what they hold; one report per source.
    `stop` set (SIGTERM) ends every download and parse under way at once."""
    sources = select_sources(config, names)
    now = now or datetime.now(UTC)
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(user_agent=default_user_agent(config.sender.reply_to), stop=stop)
    reports: dict[str, SourceReport] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources) or 1))) as pool:
            futures = {pool.submit(fetch_one, config, store, fetcher, s, now): s.name for s in sources}
            for future in as_completed(futures):
                report = future.result()
                reports[report.source] = report
                if on_report:
                    on_report(report)
    finally:
        if own_fetcher:
            fetcher.close()
    return [reports[s.name] for s in sources]
