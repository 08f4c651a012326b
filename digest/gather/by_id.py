"""Papers asked of the arXiv API by id (`id_list`): the topics' examples the store lacks.

One request per BATCH ids, at most one every 3 s (arXiv's terms of use; the fetcher paces its
requests to the host and retries 429 and 5xx); each answer is read as any arXiv API response
(arxiv_api.parse). arXiv leaves out the ids it does not know, and answers in any order: an id
asked and not in the answer is unknown. A request that fails stops the lookup: what came is
kept, the rest is `missed` and asked for next time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from ..config import ArxivApiSource
from ..errors import SourceError
from ..models import Paper
from . import arxiv_api
from .bounds import within_bounds
from .categories import ARXIV_INTERVAL, BATCH
from .http import Fetcher

NAME = "arXiv API (examples)"  # how errors name the source


@dataclass(frozen=True)
class ById:
    papers: tuple[Paper, ...]
    unknown: frozenset[str]  # asked, and not in arXiv's answer
    missed: tuple[str, ...] = ()  # not answered (the error says why): asked again next time
    error: str | None = None


def query_url(url: str, ids: Sequence[str]) -> str:
    return f"{url}?{urlencode({'id_list': ','.join(ids), 'max_results': len(ids)})}"


def papers_by_id(ids: Sequence[str], *, url: str, fetcher: Fetcher, now: datetime, timeout: float = 30.0,
                 interval: float = ARXIV_INTERVAL, deadline: float | None = None) -> ById:
    """The papers arXiv has of these ids (without version), BATCH a request; `deadline`
    (time.monotonic()) ends the lookup, the rest missed."""
    wanted = list(dict.fromkeys(ids))
    papers: list[Paper] = []
    unknown: set[str] = set()
    source = ArxivApiSource(name="examples", type="arxiv-api", url=url)
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start:start + BATCH]
        try:
            if deadline is not None and time.monotonic() >= deadline:
                raise SourceError(NAME, "no time left to ask")
            document = fetcher.get(NAME, query_url(url, batch), timeout=timeout, min_interval=interval,
                                   deadline=deadline)
            answer = within_bounds(arxiv_api.parse(source, document.body or b"", now))
        except SourceError as exc:
            return ById(tuple(papers), frozenset(unknown), tuple(wanted[start:]), str(exc))
        # An entry without a title is how arXiv once answered for an id it did not know.
        found = {p.id: p for p in answer.papers if p.id in batch and p.title}
        papers += found.values()
        unknown.update(i for i in batch if i not in found)
    return ById(tuple(papers), frozenset(unknown))
