"""What one paper from a source may hold (gather/bounds.py), in this process: each limit, each
kind of link, and the warnings that say what was changed. End to end: test_hardening.py."""

from __future__ import annotations

import pytest

from digest.gather.bounds import (
    ABSTRACT_CHARS,
    AUTHORS,
    LISTED,
    NAME_CHARS,
    SUMMARY_CHARS,
    TITLE_CHARS,
    URL_CHARS,
    shortened,
    web_address,
    within_bounds,
)
from digest.models import Listing, Paper


def paper(n: int = 1, **fields) -> Paper:
    fields.setdefault("url", f"https://example.org/{n}")
    return Paper(id=f"url:example.org/{n}", title=fields.pop("title", f"Paper {n}"), **fields)


@pytest.mark.parametrize("url, ok", [
    ("https://arxiv.org/abs/2406.01234", True), ("http://example.org/a?b=1", True), ("HTTPS://EXAMPLE.ORG/", True),
    ("javascript:alert(1)", False), ("data:text/html;base64,PHNjcmlwdD4=", False), ("file:///etc/passwd", False),
    ("ftp://example.org/x", False), ("https:///no-host", False), ("//example.org/x", False), ("", False), (None, False),
    ("http://[::1", False),  # urlsplit refuses it
    ("https://example.org/" + "a" * (URL_CHARS - 20), True), ("https://example.org/" + "a" * URL_CHARS, False),
])
def test_a_web_address_is_http_or_https_with_a_host_and_a_sensible_length(url, ok):
    assert web_address(url) is ok


def test_text_is_cut_at_a_word_boundary_with_an_ellipsis_and_never_over_the_limit():
    assert shortened("short", 10) == "short"
    assert shortened("x" * 10, 10) == "x" * 10  # exactly the limit: as it is
    assert shortened("alpha beta gamma delta", 12) == "alpha beta…"
    assert shortened("a" * 30, 10) == "a" * 9 + "…"  # no space to cut at: cut in the word
    assert shortened("a " + "b" * 30, 10) == "a " + "b" * 7 + "…"  # a space too early: cut in the word
    assert shortened("alpha beta gamma", 14) == "alpha beta…"  # the cut falls in a word: back to its start
    assert shortened("alpha beta gamma delta", 20) == "alpha beta gamma…"  # the last space, not the first
    assert shortened("alpha  beta", 8) == "alpha…"  # no space left before the ellipsis
    assert shortened("abcde fghijklm", 10) == "abcde fgh…"  # a space at half the limit is too early
    assert shortened("abcde fghijklm", 12) == "abcde fghij…"  # and before it
    assert shortened("abcdef ghijklm", 10) == "abcdef…"  # past half of it, it is where the cut goes
    for limit in (5, 50, 500):
        assert len(shortened("word " * 300, limit)) <= limit


def test_a_listing_within_bounds_is_the_same_object():
    listing = Listing((paper(1, authors=("A",) * AUTHORS, abstract="w " * (ABSTRACT_CHARS // 2)),), ("a warning",))
    assert within_bounds(listing) is listing


def test_papers_without_a_web_link_are_skipped_and_other_links_dropped_each_said_once():
    listing = Listing((paper(1, url="javascript:alert(1)"), paper(2, url="data:text/html,x"),
                       paper(3, pdf_url="javascript:x", code_url="https://github.com/a/b", hf_url="file:///x"),
                       paper(4, thumbnail="data:image/png;base64,AAAA")), ("kept",))
    bounded = within_bounds(listing)
    assert [p.id for p in bounded.papers] == ["url:example.org/3", "url:example.org/4"]
    third, fourth = bounded.papers
    assert (third.pdf_url, third.code_url, third.hf_url, fourth.thumbnail) == (None, "https://github.com/a/b", None, None)
    assert bounded.warnings == (
        "kept",
        "2 items whose link is not a web address (such as 'javascript:alert(1)'): skipped",
        "2 items with a PDF, code or other link that is not a web address: stored without it")


def test_a_long_link_is_said_shortened_in_the_warning():
    bounded = within_bounds(Listing((paper(1, url="javascript:" + "x" * 100),)))
    assert bounded.papers == ()
    assert bounded.warnings == (f"1 item whose link is not a web address (such as {'javascript:' + 'x' * 49 + '…'!r}): "
                                "skipped",)


@pytest.mark.parametrize("length, shown", [(60, "{}"), (61, "{}…")])
def test_a_link_is_shown_whole_up_to_60_characters(length, shown):
    url = "javascript:" + "x" * (length - len("javascript:"))
    warning = within_bounds(Listing((paper(1, url=url),))).warnings[0]
    assert f"(such as {shown.format(url[:60])!r})" in warning


def test_every_text_field_has_its_limit():
    long = paper(1, title="T " * TITLE_CHARS, abstract="a " * ABSTRACT_CHARS, authors=("N" * 300,) * (AUTHORS + 5),
                 categories=("c" * 300,) * (LISTED + 5), ai_keywords=("k",) * (LISTED + 1), ai_summary="s " * SUMMARY_CHARS,
                 license="l" * 300)
    bounded = within_bounds(Listing((long, paper(2))))
    short, untouched = bounded.papers
    assert untouched is bounded.papers[1] and untouched is within_bounds(Listing((long, untouched))).papers[1]
    assert len(short.title) <= TITLE_CHARS and short.title.endswith("…")
    assert len(short.abstract) <= ABSTRACT_CHARS and len(short.ai_summary or "") <= SUMMARY_CHARS
    assert len(short.authors) == AUTHORS and {len(a) for a in short.authors} == {NAME_CHARS}
    assert len(short.categories) == LISTED and len(short.ai_keywords) == LISTED
    assert len(short.license or "") == NAME_CHARS
    assert bounded.warnings == (f"1 item with text far longer than a paper's (a title of over {TITLE_CHARS:,} characters, "
                                f"an abstract of over {ABSTRACT_CHARS:,}, …): shortened",)


@pytest.mark.parametrize("field, value, limit", [
    ("title", "T " * TITLE_CHARS, TITLE_CHARS), ("abstract", "a " * ABSTRACT_CHARS, ABSTRACT_CHARS),
    ("ai_summary", "s " * SUMMARY_CHARS, SUMMARY_CHARS), ("license", "l" * (NAME_CHARS + 1), NAME_CHARS),
    ("authors", ("A",) * (AUTHORS + 1), AUTHORS), ("authors", ("N" * (NAME_CHARS + 1),), 1),
    ("categories", ("c",) * (LISTED + 1), LISTED), ("categories", ("c" * (NAME_CHARS + 1),), 1),
    ("ai_keywords", ("k",) * (LISTED + 1), LISTED), ("ai_keywords", ("k" * (NAME_CHARS + 1),), 1),
])
def test_each_field_alone_over_its_limit_is_shortened(field, value, limit):
    bounded = within_bounds(Listing((paper(1, **{field: value}),)))
    kept = getattr(bounded.papers[0], field)
    assert kept != value and len(kept) <= limit
    if isinstance(kept, tuple):
        assert all(len(item) <= NAME_CHARS for item in kept)
    assert len(bounded.warnings) == 1 and "shortened" in bounded.warnings[0]


def test_a_paper_with_a_bad_link_and_long_text_loses_the_one_and_keeps_the_other_short():
    bounded = within_bounds(Listing((paper(1, title="T " * TITLE_CHARS, pdf_url="javascript:x"),)))
    kept = bounded.papers[0]
    assert kept.pdf_url is None and len(kept.title) <= TITLE_CHARS and len(bounded.warnings) == 2
