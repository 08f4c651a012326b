"""arXiv categories for papers that came without them (Hugging Face Daily Papers gives none).

Hugging Face papers are arXiv papers, so the arXiv API knows their categories: one request
per 100 ids (`id_list`), at most one every 3 s (arXiv's terms of use; the fetcher paces every
request to the host, the arxiv-api sources' included). What the store already knows is never
asked again; what could not be learnt is left unknown with a warning, and asked for on the
next fetch. A source read from a local file is taken as offline and asks nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from urllib.parse import urlencode

from ..config import ArxivApiSource
from ..errors import SourceError
from ..models import Listing
from ..store.database import Store
from . import arxiv_api
from .http import Fetcher

BATCH = 100  # ids per request
ARXIV_INTERVAL = 3.0  # seconds between requests to the arXiv API


def fill_categories(listing: Listing, *, name: str, url: str, store: Store, fetcher: Fetcher,
                    timeout: float, now: datetime) -> Listing:
    """The listing with the categories of its papers filled in, where they can be had."""
    missing = [p.id for p in listing.papers if not p.categories and "." in p.id and ":" not in p.id]
    if not missing:
        return listing
    found = store.known_categories(missing)
    ask = [i for i in missing if i not in found]
    warnings = list(listing.warnings)
    for start in range(0, len(ask), BATCH):
        batch = ask[start:start + BATCH]
        query = urlencode({"id_list": ",".join(batch), "max_results": len(batch)})
        try:
            document = fetcher.get(name, f"{url}?{query}", timeout=timeout, min_interval=ARXIV_INTERVAL)
            answer = arxiv_api.parse(ArxivApiSource(name=name, type="arxiv-api", url=url), document.body or b"", now)
        except SourceError as exc:
            left = len(ask) - start
            reason = exc.message.removeprefix(name + ": ").replace(f"{url}?{query}", url)  # not a hundred ids
            warnings.append(f"categories of {left} paper{'s' * (left > 1)} unknown (the arXiv API: {reason}); "
                            "asked again on the next fetch (`fill_categories: false` on the source stops asking)")
            break
        found.update({p.id: p.categories for p in answer.papers if p.id in batch and p.categories})
    papers = tuple(replace(p, categories=found[p.id]) if not p.categories and p.id in found else p
                   for p in listing.papers)
    return replace(listing, papers=papers, warnings=tuple(warnings))
