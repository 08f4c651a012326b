"""The real captures of arXiv and Hugging Face parse into the papers they hold.

Each capture in tests/data/realworld has its expected result beside it (<name>.expected.json).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from digest.config import ArxivApiSource, ArxivSource, FeedSource, HuggingFaceSource
from digest.gather.adapters import arxiv, arxiv_api, feed, huggingface

from .conftest import REALWORLD

NOW = datetime(2026, 11, 22, tzinfo=UTC)
CAPTURES = {
    "arxiv-rss-cs.AI-2026-04-27.xml": (arxiv, ArxivSource(name="s", type="arxiv", categories=["cs.AI"])),
    "arxiv-rss-cs.CL-2026-04-27.xml": (arxiv, ArxivSource(name="s", type="arxiv", categories=["cs.CL"])),
    "arxiv-rss-cs.LG-2026-04-27.xml": (arxiv, ArxivSource(name="s", type="arxiv", categories=["cs.LG"])),
    "arxiv-atom-2025-08-20.xml": (arxiv, ArxivSource(name="s", type="arxiv", categories=["cs.AI"], format="atom")),
    "arxiv-api-query-testing-100.xml": (arxiv_api, ArxivApiSource(name="s", type="arxiv-api", query="all:testing")),
    "arxiv-api-query-transformer.xml": (arxiv_api, ArxivApiSource(name="s", type="arxiv-api", query="x")),
    "hf-daily-papers-2026-06-12.json": (huggingface, HuggingFaceSource(name="s", type="huggingface")),
    "hf-blog-rss.xml": (feed, FeedSource(name="s", type="feed", url="x")),
}


def parse_capture(name, now=NOW):
    module, source = CAPTURES[name]
    return module.parse(source, (REALWORLD / name).read_bytes(), now)


def expected_of(listing):
    return [
        {"id": p.id, "title": p.title, "authors": list(p.authors), "categories": list(p.categories),
         "url": p.url, "version": p.version, "announce_type": p.announce_type, "upvotes": p.upvotes,
         "comments": p.comments, "code_url": p.code_url, "abstract_start": p.abstract[:60],
         "published": p.published.isoformat() if p.published else None}
        for p in listing.papers
    ]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_matches_expected(name):
    expected = json.loads((REALWORLD / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert expected_of(parse_capture(name)) == expected


@pytest.mark.parametrize("name", [n for n in CAPTURES if n.startswith("arxiv")])
def test_every_arxiv_entry_is_read(name):
    """Independent of the parser: count the ids in the raw file."""
    raw = (REALWORLD / name).read_text(encoding="utf-8")
    ids = re.findall(r"<(?:id|guid)[^>]*>(?:oai:arXiv\.org:|https?://arxiv\.org/abs/)([^<]+?)v\d+<", raw)
    assert ids, "the capture holds arXiv ids"
    assert [p.id for p in parse_capture(name).papers] == ids


def test_hf_fields():
    papers = {p.id: p for p in parse_capture("hf-daily-papers-2026-06-12.json").papers}
    assert len(papers) == 30
    top = papers["2606.13681"]
    assert top.upvotes == 118 and top.comments is not None
    assert top.code_url == "https://github.com/Aiden0526/EvoArena"
    assert top.ai_summary and "EvoArena" in top.ai_summary
    assert "EvoMem" in top.ai_keywords
    assert top.hf_url == "https://huggingface.co/papers/2606.13681"
    assert top.pdf_url == "https://arxiv.org/pdf/2606.13681"


def test_arxiv_rss_fields():
    paper = parse_capture("arxiv-rss-cs.CL-2026-04-27.xml").papers[0]
    assert paper.id == "2604.22002" and paper.version == 1 and paper.announce_type == "new"
    assert paper.authors == ("Anamta Khan", "Ratna Kandala", "Deepti", "Sheza Munir", "Joyojeet Pal")
    assert paper.abstract.startswith("Social media platforms") and "Announce Type" not in paper.abstract
    assert paper.license == "http://creativecommons.org/licenses/by-nc-sa/4.0/"


def test_atom_listing_keeps_new_and_cross_by_default_and_filters_by_config():
    assert len(parse_capture("arxiv-atom-2025-08-20.xml").papers) == 7
    only_new = ArxivSource(name="s", type="arxiv", categories=["cs.AI"], announce_types=["new"])
    listing = arxiv.parse(only_new, (REALWORLD / "arxiv-atom-2025-08-20.xml").read_bytes(), NOW)
    assert [p.announce_type for p in listing.papers] == ["new", "new"]
    assert any("left out by announce_types: 5 cross" in w for w in listing.warnings)


def test_api_old_style_ids_and_primary_category_first():
    papers = parse_capture("arxiv-api-query-testing-100.xml").papers
    assert {"cs/0503050", "hep-ph/0301050", "gr-qc/0103067"} <= {p.id for p in papers}
    mana = parse_capture("arxiv-api-query-transformer.xml").papers[0]
    assert mana.categories[0] == "cs.RO" and mana.authors[-1] == "C. Karen Liu"


def test_stale_listing_is_a_warning_not_a_quiet_day():
    fresh_now = datetime(2026, 4, 27, 12, 0, tzinfo=UTC)  # the capture's own Monday
    assert not any("stale" in w for w in parse_capture("arxiv-rss-cs.CL-2026-04-27.xml", fresh_now).warnings)
    tuesday = datetime(2026, 4, 28, 14, 0, tzinfo=UTC)
    warnings = parse_capture("arxiv-rss-cs.CL-2026-04-27.xml", tuesday).warnings
    assert any("stale listing: dated 2026-04-27 but arXiv should have announced 2026-04-28" in w for w in warnings)


def test_weekend_is_not_stale():
    # Friday's listing read on Sunday: Saturday and Sunday are skipDays.
    friday = datetime(2026, 4, 24, 4, 0, tzinfo=UTC)
    sunday = datetime(2026, 4, 26, 20, 0, tzinfo=UTC)
    assert arxiv.staleness(friday, {5, 6}, sunday) is None
    monday_morning = datetime(2026, 4, 27, 9, 0, tzinfo=UTC)  # 05:00 in New York
    assert arxiv.staleness(friday, {5, 6}, monday_morning) is not None
