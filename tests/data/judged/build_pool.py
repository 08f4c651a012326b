"""Rebuild papers.jsonl, the judged set's pool of papers, from the captures the project ships:
the Hugging Face Daily Papers pages (digest/samples), the arXiv API response for `testing` and
the Hugging Face API response (tests/data/realworld). Real titles and abstracts; one line per
paper, `id`, `title`, `abstract`, `from`. Run from the repository root:
`python tests/data/judged/build_pool.py`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from digest.config import ArxivApiSource, FeedSource, HuggingFaceSource
from digest.gather import arxiv_api, feed, huggingface

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 6, 12, tzinfo=UTC)


def main() -> None:
    listings = [
        ("daily-papers-pages", feed.parse(FeedSource(name="pages", type="feed", url="x"),
                                          (ROOT / "digest/samples/daily-papers-pages.atom.xml").read_bytes(), NOW)),
        ("arxiv-api-testing", arxiv_api.parse(ArxivApiSource(name="api", type="arxiv-api", query="all:testing"),
                                              (ROOT / "tests/data/realworld/arxiv-api-query-testing-100.xml").read_bytes(), NOW)),
        ("hf-daily-papers", huggingface.parse(HuggingFaceSource(name="hf", type="huggingface"),
                                              (ROOT / "tests/data/realworld/hf-daily-papers-2026-06-12.json").read_bytes(), NOW)),
    ]
    seen: set[str] = set()
    lines = []
    for origin, listing in listings:
        for paper in listing.papers:
            key = " ".join(paper.title.lower().split())
            if key in seen or not paper.abstract.strip():
                continue
            seen.add(key)
            lines.append(json.dumps({"id": f"p{len(lines) + 1:03d}", "title": " ".join(paper.title.split()),
                                     "abstract": " ".join(paper.abstract.split()), "from": origin,
                                     "source_id": paper.id}, ensure_ascii=False))
    (Path(__file__).with_name("papers.jsonl")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} papers")


if __name__ == "__main__":
    main()
