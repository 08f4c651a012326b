"""A planned digest as the ledger keeps it: the sections, scores and why-lines the match made,
with papers by id, so any worker can render it without matching again."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from ..config import Subscriber
from ..models import Digest, DigestEntry, Paper, Section

_VERSION = 1


def encode(digest: Digest) -> str:
    return json.dumps({
        "v": _VERSION, "generated_at": digest.generated_at.isoformat(), "since": digest.since.isoformat(),
        "omitted": digest.omitted,
        "sections": [{"topic": s.topic, "omitted": s.omitted, "trending": s.trending,
                      "entries": [[e.paper.id, e.score, e.why, list(e.matched_terms), list(e.also_in)]
                                  for e in s.entries]} for s in digest.sections],
    }, ensure_ascii=False, separators=(",", ":"))


def paper_ids(content: str) -> list[str]:
    return [e[0] for s in json.loads(content)["sections"] for e in s["entries"]]


def decode(content: str, subscriber: Subscriber, papers: Mapping[str, Paper]) -> Digest | None:
    """The digest again; None if it was written by a version this one cannot read. A paper no
    longer in the store is left out (the rest still goes)."""
    data = json.loads(content)
    if data.get("v") != _VERSION:
        return None
    sections = tuple(
        Section(s["topic"], tuple(DigestEntry(papers[pid], score, why, tuple(terms), tuple(also))
                                  for pid, score, why, terms, also in s["entries"] if pid in papers),
                s["omitted"], s["trending"])
        for s in data["sections"])
    return Digest(subscriber.email, subscriber.name, datetime.fromisoformat(data["generated_at"]),
                  datetime.fromisoformat(data["since"]), sections, data["omitted"])
