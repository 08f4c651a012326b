"""Independent expectations for the parsers: for a few items of each real capture, what the
file says, read from the file by hand and written here (the `*.expected.json` beside the
captures are snapshots of the parser's own output; these are not)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.config import ArxivApiSource, ArxivSource, FeedSource, HuggingFaceSource
from digest.gather import arxiv, arxiv_api, feed, huggingface

from .conftest import realworld

NOW = datetime(2026, 4, 27, 12, 0, tzinfo=UTC)


def by_id(papers):  # noqa: ANN001, ANN201
    return {p.id: p for p in papers}


def rss(name: str):  # noqa: ANN201
    return arxiv.parse(ArxivSource(name="arxiv", type="arxiv", url="x", announce_types=["new", "cross", "replace",
                                                                                          "replace-cross"]),
                       realworld(name), NOW)


def test_arxiv_rss_cs_cl():
    listing = rss("arxiv-rss-cs.CL-2026-04-27.xml")
    papers = by_id(listing.papers)
    cow = papers["2604.22002"]
    assert cow.title == ("When Cow Urine Cures Constipation on YouTube: Limits of LLMs in Detecting "
                         "Culture-specific Health Misinformation")
    assert cow.version == 1 and cow.announce_type == "new" and cow.categories == ("cs.CL",)
    # "Anamta Khan, Ratna Kandala,  Deepti, Sheza Munir, Joyojeet Pal": a one-word name, a double space
    assert cow.authors == ("Anamta Khan", "Ratna Kandala", "Deepti", "Sheza Munir", "Joyojeet Pal")
    assert cow.published == datetime(2026, 4, 27, 4, 0, tzinfo=UTC)  # 00:00 -0400
    assert cow.url == "https://arxiv.org/abs/2604.22002" and cow.pdf_url == "https://arxiv.org/pdf/2604.22002"
    assert cow.license == "http://creativecommons.org/licenses/by-nc-sa/4.0/"
    assert cow.abstract.startswith("Social media platforms have become primary channels for health information")
    shared = papers["2604.22027"]
    assert shared.categories == ("cs.CL", "cs.AI", "cs.LG")
    assert shared.authors[:2] == ("Zhuonan Yang", "Jacob Xiaochen Li") and shared.authors[-1] == "Ellie Pavlick"
    assert len(shared.authors) == 8
    assert listing.listing_date == datetime(2026, 4, 27, 4, 0, tzinfo=UTC)


def test_arxiv_rss_cs_ai_and_cs_lg():
    ai = by_id(rss("arxiv-rss-cs.AI-2026-04-27.xml").papers)
    assert ai["2604.21935"].title == "Math Takes Two: A test for emergent mathematical reasoning in communication"
    assert ai["2604.21935"].authors == ("Michael Cooper", "Samuel Cooper")
    assert ai["2604.21935"].categories == ("cs.AI", "cs.LG")
    assert ai["2604.21936"].categories == ("cs.AI", "cs.CV", "cs.MA")
    assert ai["2604.21936"].license == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    lg = by_id(rss("arxiv-rss-cs.LG-2026-04-27.xml").papers)
    focus = lg["2604.21952"]
    assert focus.title.startswith("Focus Session: Hardware and Software Techniques")
    assert focus.categories == ("cs.LG", "cs.AI", "cs.AR", "cs.NE", "cs.RO")
    assert focus.authors[0] == "Muhammad Shafique" and focus.authors[-1] == "Minghao Shao"


def test_arxiv_atom_listing_with_cross_lists():
    listing = arxiv.parse(ArxivSource(name="a", type="arxiv", url="x", format="atom", announce_types=["new", "cross"]),
                          realworld("arxiv-atom-2025-08-20.xml"), NOW)
    papers = by_id(listing.papers)
    align = papers["2508.13426"]
    assert align.title == "ALIGN: Word Association Learning for Cross-Cultural Generalization in Large Language Models"
    assert align.announce_type == "cross" and align.version == 1
    assert align.categories == ("cs.CL", "cs.AI")
    assert align.authors == ("Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang")
    assert align.published == datetime(2025, 8, 20, 4, 0, tzinfo=UTC)
    assert papers["2508.13428"].categories == ("cs.CV", "cs.AI", "cs.MM")
    assert papers["2508.13429"].authors == ("Paulo André Lima de Castro",)  # Andr\'e in the file
    assert papers["2508.13429"].categories == ("q-fin.CP", "cs.AI")


def test_arxiv_api_testing_100():
    listing = arxiv_api.parse(ArxivApiSource(name="api", type="arxiv-api", url="x"),
                              realworld("arxiv-api-query-testing-100.xml"), NOW)
    assert len(listing.papers) == 100
    first = by_id(listing.papers)["2202.12139"]
    assert first.title == "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    assert first.authors == ("Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker")
    assert first.categories == ("cs.SE", "cs.LG")  # the primary category first
    assert first.version == 1 and first.doi == "10.1109/icstw55395.2022.00035"
    assert first.published == datetime(2022, 2, 24, 15, 5, 19, tzinfo=UTC)


def test_arxiv_api_transformer():
    listing = arxiv_api.parse(ArxivApiSource(name="api", type="arxiv-api", url="x"),
                              realworld("arxiv-api-query-transformer.xml"), NOW)
    mana = by_id(listing.papers)["2606.13677"]
    assert mana.title == "Mana: Dexterous Manipulation of Articulated Tools"
    assert mana.authors == ("Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu")
    assert mana.categories == ("cs.RO", "cs.AI", "cs.CV", "cs.LG")
    assert mana.published == datetime(2026, 6, 11, 17, 59, 49, tzinfo=UTC)


def test_hugging_face_daily_papers():
    listing = huggingface.parse(HuggingFaceSource(name="hf", type="huggingface"),
                                realworld("hf-daily-papers-2026-06-12.json"), NOW)
    assert len(listing.papers) == 30
    msa = by_id(listing.papers)["2606.13392"]
    assert msa.title == "MiniMax Sparse Attention"
    assert msa.upvotes == 103 and msa.comments == 4  # upvotes under "paper", numComments at the top
    assert msa.code_url == "https://github.com/MiniMax-AI/MSA"
    assert msa.authors[:3] == ("Xunhao Lai", "Weiqi Xu", "Yufeng Yang") and len(msa.authors) == 11
    assert msa.published == datetime(2026, 6, 11, 0, 0, tzinfo=UTC)  # paper.publishedAt, not the item's
    assert msa.hf_url == "https://huggingface.co/papers/2606.13392"
    assert msa.ai_summary.startswith("MiniMax Sparse Attention enables efficient processing of ultra-long contexts")
    assert msa.categories == ()  # Hugging Face gives none


@pytest.mark.parametrize("index, title, link, day", [
    (0, "How to build scalable web apps with OpenAI's Privacy Filter",
     "https://huggingface.co/blog/openai-privacy-filter-web-apps", 27),
    (1, "DeepSeek-V4: a million-token context that agents can actually use", "https://huggingface.co/blog/deepseekv4", 24),
])
def test_a_plain_blog_feed(index, title, link, day):
    listing = feed.parse(FeedSource(name="blog", type="feed", url="x"), realworld("hf-blog-rss.xml"), NOW)
    paper = listing.papers[index]
    assert paper.title == title and paper.url == link
    assert paper.id == "url:" + link  # neither an arXiv id nor a DOI: the normalised link
    assert paper.published == datetime(2026, 4, day, 0, 0, tzinfo=UTC)


def test_markup_in_a_feed_s_author_names_is_dropped():
    """An author written "Alice <b>Evil</b>" showed its tags in both parts of the e-mail."""
    body = b"""<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>
<item><title>A paper</title><link>https://example.org/p1</link>
<dc:creator>Alice &lt;b&gt;Evil&lt;/b&gt;</dc:creator></item>
<item><title>Another</title><link>https://example.org/p2</link>
<dc:creator>Alice &lt;b&gt;Evil&lt;/b&gt;, Bob &amp;amp; Co</dc:creator></item></channel></rss>"""
    one, two = feed.parse(FeedSource(name="blog", type="feed", url="x"), body, NOW).papers
    assert one.authors == ("Alice Evil",) and two.authors == ("Alice Evil", "Bob & Co")
