"""Rendering: the compiled renderer against the full chain, hostile text, the size budget,
the MIME message, template errors, unsubscribe tokens."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import Config, Sender, Subscriber, Topic
from digest.match.normalise import joined, shown_term_key, stem
from digest.models import Digest, DigestEntry, Paper, Section
from digest.render.compose import HTML_BUDGET, Composer, probe_values
from digest.render.email_context import clean_url, rebuilt_url, with_kept
from digest.render.highlight import _tokens, merged, spans
from digest.render.links import email_from_token, unsubscribe_token
from digest.render.message import (
    _encoded_segment,
    build_message,
    plain_segment,
    quoted_printable,
    wire_message,
)
from digest.render.renderer import (
    CompiledRenderer,
    NaiveRenderer,
    TemplateError,
    _indent,
    _numbered,
    _wordwrap,
    _wrapped_after,
    builtin_templates,
)

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
HOSTILE = [
    '<script>alert("x")</script>', "<b>unclosed <i>tags", "{{ 7*7 }}", "{% for x in y %}", "{# c #}",
    "שלום עולם — مرحبا", "emoji 🙂👩‍🔬 flags 🇫🇷", "&amp; &lt;already&gt; escaped", "\u202egnp.exe", "a\x00b\x1fc",
    "quote \" and ' apostrophe", "]]><!-- comment -->", "<mj-section>", "x" * 300, "line\nbreak\r\ntab\t",
]


def config(**extra) -> Config:
    return Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>", "reply_to": "admin@example.org"}),
                  base_url="https://digest.example.org", **extra)


def subscriber(**extra) -> Subscriber:
    return Subscriber(email="alice@example.org", name="Alice", topics=[Topic(name="KV", keywords=["KV cache"])], **extra)


def paper(n: int, title: str = "", abstract: str = "", **extra) -> Paper:
    extra.setdefault("authors", ("Tri Dao", "Ann Other", "Third Person", "Fourth Person", "Last Author"))
    extra.setdefault("categories", ("cs.CL", "cs.LG"))
    return Paper(id=f"2611.{n:05d}", title=title or f"Compressing the KV cache, part {n}",
                 url=f"https://arxiv.org/abs/2611.{n:05d}", abstract=abstract or
                 f"We study the KV-cache. Part {n} of a long series. " + "More words here. " * 20,
                 pdf_url=f"https://arxiv.org/pdf/2611.{n:05d}", first_seen_at=NOW - timedelta(hours=1), **extra)


def make_digest(papers: list[Paper], topics: tuple[str, ...] = ("KV",), why: str = 'matched "KV cache" in title') -> Digest:
    per = max(1, -(-len(papers) // len(topics)))
    sections = tuple(
        Section(topic, tuple(DigestEntry(p, round(0.99 - i / 100, 4), why, ("KV cache",)) for i, p in
                             enumerate(papers[t * per:(t + 1) * per], t * per)))
        for t, topic in enumerate(topics) if papers[t * per:(t + 1) * per])
    return Digest("alice@example.org", "Alice", NOW, NOW - timedelta(days=1), sections)


@cache
def renderers() -> tuple[NaiveRenderer, CompiledRenderer]:
    compiled = CompiledRenderer(probes=probe_values())
    assert compiled.compiled, compiled.fallback_reason
    return NaiveRenderer(), compiled


def both(digest: Digest, cfg: Config | None = None):
    naive, compiled = renderers()
    cfg = cfg or config()
    slow = Composer(cfg, secret="s", renderer=naive).email(digest, subscriber())
    fast = Composer(cfg, secret="s", renderer=compiled).email(digest, subscriber())
    return slow, fast


# ---------------------------------------------------------------- the compiled renderer is the full chain


def test_compiled_output_is_the_full_chains_byte_for_byte():
    digest = make_digest([paper(n, upvotes=n, comments=n % 3, hf_url=f"https://huggingface.co/papers/2611.{n:05d}",
                                code_url="https://github.com/a/b?x=1&y=2", ai_summary=f"Summary {n} about KV caches.")
                          for n in range(1, 31)], topics=("KV", "Other", "Trending"))
    slow, fast = both(digest)
    assert fast.html == slow.html and fast.text == slow.text
    assert fast.html.count('class="card"') == 30


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)), min_size=4, max_size=4))
def test_compiled_equals_full_chain_on_hostile_text(texts):
    title, abstract, author, topic = texts
    papers = [paper(1, title=title or "t", abstract=abstract, authors=(author,), upvotes=3,
                    ai_summary=abstract or None),
              paper(2, title=f"{title} KV cache", code_url=f"https://github.com/{author}")]
    digest = make_digest(papers, topics=(topic or "T", "Trending"), why=f"matched {title}")
    slow, fast = both(digest)
    assert fast.html == slow.html
    assert fast.text == slow.text


def test_hostile_text_renders_as_inert_text():
    papers = [paper(n, title=t, abstract=t + " KV cache") for n, t in enumerate(HOSTILE, 1)]
    digest = make_digest(papers, topics=('<script>alert("topic")</script>', "{{ config }}"))
    _, fast = both(digest)
    doc = lxml.html.fromstring(fast.html)
    assert not doc.xpath("//script") and not doc.xpath("//*[starts-with(local-name(), 'mj-')]")
    assert not doc.xpath("//i") and not doc.xpath("//b")  # tags from feeds never become elements
    titles = [h.text_content() for h in doc.xpath("//h3")]
    assert '<script>alert("x")</script>' in titles and "{{ 7*7 }}" in titles and "{% for x in y %}" in titles
    assert "49" not in fast.text and "{{ 7*7 }}" in fast.text
    assert "\u202e" not in fast.html and "\x00" not in fast.html  # direction overrides and controls dropped
    assert "שלום עולם — مرحبا" in fast.html and "👩‍🔬" in fast.html
    assert '&lt;script&gt;alert("topic")&lt;/script&gt;</h2>' in fast.html


# ---------------------------------------------------------------- content


def test_email_content_for_a_reader():
    papers = [paper(1, title="Speculative decoding with a KV-cache", upvotes=42, comments=5,
                    authors=tuple(f"Author {i}" for i in range(12)), hf_url="https://huggingface.co/papers/2611.00001",
                    code_url="https://github.com/x/y", ai_summary="We make KV caches small. It works well."),
              paper(2, upvotes=None)]
    _, email_ = both(make_digest(papers))
    doc = lxml.html.fromstring(email_.html)
    assert doc.get("lang") == "en" and doc.xpath("//h1") and doc.xpath("//h2") and doc.xpath("//h3")
    card = doc.xpath("//div[@class='card']")[0]
    text = card.text_content()
    assert "Author 0, Author 1, Author 2 … Author 11" in text and "▲\u00a042" in text and "5 comments" in text  # ▲ never parts from its number
    assert "We make KV caches small." in text  # the AI summary is the TL;DR
    assert [m.text for m in card.xpath(".//mark")] == ["KV caches"]  # matched terms highlighted
    links = {a.text: a.get("href") for a in card.xpath(".//a")}
    assert links["Speculative decoding with a KV-cache"] == "https://arxiv.org/abs/2611.00001"
    assert links["PDF"].endswith("/pdf/2611.00001") and links["Code"] == "https://github.com/x/y"
    assert all(a.get("aria-label", "").startswith("Speculative decoding") for a in card.xpath(".//a[@aria-label]"))
    assert 'Why: matched "KV cache" in title' in text
    toc = doc.xpath("//ul[@class='toc']//a")
    assert toc[0].get("href") == "#topic-1" and doc.xpath("//h2[@id='topic-1']")
    footer = doc.xpath("//div[contains(@class, 'rule')]")[0].text_content()
    assert "alice@example.org" in footer and "for: KV" in footer
    assert "Manage your topics, schedule or time zone" in footer and "reply to this e-mail" not in footer  # base_url: a link
    unsubscribe = doc.xpath("//a[text()='Unsubscribe from these e-mails']")[0].get("href")
    assert unsubscribe.startswith("https://digest.example.org/unsubscribe/")
    assert "prefers-color-scheme: dark" in email_.html and '<meta name="color-scheme"' in email_.html
    assert email_.subject == "Paper digest · Nov 22 · 2 new: KV (2)"
    assert email_.preheader.startswith("KV: Speculative decoding")


def test_text_part_reads_on_its_own():
    _, email_ = both(make_digest([paper(n, upvotes=n) for n in range(1, 4)]))
    text = email_.text
    assert "<div" not in text and "&lt;" not in text and "&amp;" not in text
    assert "## KV (3)" in text and "\n1. Compressing the KV cache, part 1" in text
    assert "https://arxiv.org/abs/2611.00001" in text and "Why: matched" in text
    assert "Unsubscribe: https://digest.example.org/unsubscribe/" in text
    assert max(len(line) for line in text.splitlines() if "http" not in line) <= 76


def test_empty_digest_says_nothing_new():
    _, email_ = both(make_digest([]))
    assert "Nothing new matches your topics" in email_.html and "Nothing new matches your topics" in email_.text
    assert email_.subject.endswith("nothing new")


# ---------------------------------------------------------------- size budget


@pytest.mark.parametrize("count", [1, 10, 30, 40])
def test_realistic_digests_stay_under_the_budget(count):
    papers = [paper(n, upvotes=n, hf_url=f"https://huggingface.co/papers/2611.{n:05d}", code_url="https://github.com/a/b",
                    ai_summary="An AI summary of this paper that is about as long as the real ones. " * 4,
                    authors=tuple(f"Author Number {i}" for i in range(30))) for n in range(1, count + 1)]
    _, email_ = both(make_digest(papers, topics=("A", "B", "C")))
    assert email_.html_bytes < HTML_BUDGET
    assert email_.cards == count and email_.linked == 0


def test_over_budget_the_lowest_ranked_become_links():
    papers = [paper(n, title=f"Paper {n} " + "long title " * 10, ai_summary="summary " * 60) for n in range(1, 41)]
    digest = make_digest(papers, topics=("A", "B"))
    composer = Composer(config(), secret="s", renderer=renderers()[1], budget=40_000)
    email_ = composer.email(digest, subscriber())
    assert email_.html_bytes <= 40_000 and 0 < email_.cards < 40 and email_.cards + email_.linked == 40
    doc = lxml.html.fromstring(email_.html)
    cards = [h.text_content() for h in doc.xpath("//h3")]
    linked = [a.text_content() for a in doc.xpath("//h2[@id='more']/following-sibling::ul[1]//a")]
    assert cards == [f"Paper {n} " + ("long title " * 10).strip() for n in range(1, email_.cards + 1)]  # best first
    assert len(linked) == email_.linked and linked[-1].startswith("Paper 40 ")
    assert "## More papers" in email_.text and "Unsubscribe from these e-mails" in email_.html


# ---------------------------------------------------------------- the message


def test_mime_message_text_first_with_bulk_headers():
    _, email_ = both(make_digest([paper(1)]))
    raw = email_.message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed["To"] == "Alice <alice@example.org>" and parsed["Reply-To"] == "admin@example.org"
    assert parsed["Subject"] == email_.subject and parsed["Date"] and parsed["Message-ID"].endswith("@example.org>")
    unsubscribe = parsed["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://digest.example.org/unsubscribe/") and "<mailto:admin@example.org?" in unsubscribe
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n" in raw and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip() == email_.html.rstrip()


_HEADER_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=120)  # one line, as validated


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")), deadline=None)
@given(subject=_HEADER_TEXT, name=st.one_of(st.none(), _HEADER_TEXT), text=st.text(max_size=400),
       html=st.text(max_size=400), list_name=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                                                     max_size=40).filter(lambda v: v.strip() and not set(v) & set("<>")))
def test_the_wire_message_reads_back_as_the_email_package_builds_it(subject, name, text, html, list_name):
    """The bytes written directly are, to a mail reader, the message the email package builds:
    every header decodes to the same value, both parts to the same text."""
    values = dict(sender="Dïgest Lab <digest@example.org>", reply_to="admin@example.org", to="alice@example.org",
                  to_name=name, subject=subject, text=text, html=html, date=datetime(2026, 11, 30, 7, 30, tzinfo=UTC),
                  msg_id="<digest.abc@example.org>", unsubscribe_url="https://digest.example.org/unsubscribe/t",
                  unsubscribe_mailto="mailto:digest@example.org?subject=unsubscribe", list_name=list_name)
    wire = wire_message(**values)
    ours = email.message_from_bytes(wire, policy=email.policy.default)
    theirs = email.message_from_bytes(build_message(**values).as_bytes(), policy=email.policy.default)
    def same(text: str) -> str:
        return " ".join(text.split())

    # Addresses read back as written (the email package itself loses some names, such as ": x").
    for header, name_, address in (("From", "Dïgest Lab", "digest@example.org"), ("To", name, "alice@example.org"),
                                   ("Reply-To", "", "admin@example.org")):
        assert [(same(a.display_name), a.addr_spec) for a in ours[header].addresses] == [(same(name_ or ""), address)]
    for header in ("Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted",
                   "MIME-Version"):
        assert same(str(ours[header])) == same(str(theirs[header])), header
    assert ours["Content-Language"] == "en"  # (the email package drops it: set_content clears Content-*)
    assert ours["Auto-Submitted"] == "auto-generated"  # RFC 3834: vacation responders do not answer a digest
    assert [p.get_content_type() for p in ours.iter_parts()] == ["text/plain", "text/html"]
    for mine, reference in zip(ours.iter_parts(), theirs.iter_parts()):
        assert mine.get_content() == reference.get_content()
        assert mine.get_content_charset() == "utf-8" and mine["Content-Transfer-Encoding"] == "quoted-printable"
    lines = wire.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines) and b"\n" not in wire.replace(b"\r\n", b"")
    body = wire.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n")) and body.isascii()


_QP_PIECES = st.lists(st.one_of(st.sampled_from(["</div>", " ", "\t", "=", ".", "\n", "\r\n", "é", "▲", "=\n"]),
                                 st.text(max_size=90), st.integers(60, 160).map(lambda n: "x" * n)), max_size=40)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")), deadline=None)
@given(pieces=_QP_PIECES)
def test_quoted_printable_in_remembered_pieces_decodes_to_the_text(pieces):
    """Long lines cut at `</div>` and encoded piece by piece, joined by soft line breaks: the
    decoded text is the body (with CRLF line ends), every line at most 76 characters, ASCII;
    and encoding it again (every piece now remembered) gives the same bytes."""
    body = "".join(pieces)
    encoded = quoted_printable(body)
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    expected = (expected if expected.endswith("\n") else expected + "\n").replace("\n", "\r\n")
    assert binascii.a2b_qp(encoded).decode("utf-8") == expected
    assert encoded.isascii() and encoded.endswith(b"\r\n") and b"\n" not in encoded.replace(b"\r\n", b"")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert all(not line.endswith((b" ", b"\t")) for line in encoded.split(b"\r\n"))  # no trailing white space lost
    assert quoted_printable(body) == encoded


_URL_PIECES = st.lists(st.sampled_from(["http", "https", "HTTPS", "://", "/", "?", "#", "=", "&", ":", "8080", ":99999",
                                         "%20", "%", "~", "-", ".", "_", "a", "Z", "9", "é", " ", "'", "\n", "@", "[::1]",
                                         "host.example", "rate", "x~y"]), max_size=14).map("".join)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")) * 4, deadline=None)
@given(url=st.one_of(_URL_PIECES, st.builds("{}://{}/{}".format, st.sampled_from(["http", "https", "HTTPS", "Http"]),
                                             st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True), _URL_PIECES)))
def test_plain_urls_skip_the_parse_and_come_out_the_same(url):
    """`clean_url` gives URLs it finds plain back as they are (every rating link takes that
    path); whatever it gives back is what the slow path, parse and rebuild, would."""
    assert clean_url(url) == rebuilt_url(url)


_TITLE_WORDS = st.lists(st.one_of(st.sampled_from(["state-of-the-art", "LLM", "a", "—", "x" * 80, "well-", "-", "é", "\t",
                                                    "  ", "", "KV-cache", "1.", "Vision-Language-Action"]),
                                   st.text(alphabet="abc- .", max_size=12)), max_size=30).map(" ".join)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")) * 4, deadline=None)
@given(title=_TITLE_WORDS, number=st.integers(1, 120), width=st.sampled_from([20, 40, 76]), indent=st.integers(0, 4))
def test_numbered_is_the_wrap_of_number_and_title(title, number, width, indent):
    """The text part's `numbered` filter (remembered per title, not per place in the list)
    writes what wrapping "N. title" whole and indenting it writes."""
    assert _numbered(title, number, width, indent) == _indent(_wordwrap(f"{number}. {title}", width), indent)


_WRAP_WORDS = st.lists(st.one_of(st.sampled_from(["KV", "cache", "·", "\xa0", "a\xa0b", "\u2003", "x" * 30, "well-", "—",
                                                  "--", "", " ", "\t", "\n", "\x1f", "é", "1.", "Why:"]),
                                 st.text(alphabet="ab .", max_size=9)), max_size=25).map(" ".join)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")) * 4, deadline=None)
@given(text=_WRAP_WORDS, width=st.sampled_from([8, 20, 31, 72, 76]), room=st.integers(0, 6))
def test_wrapping_writes_what_textwrap_writes(text, width, room):
    """The text part's wrapping fills lines word by word where that is all textwrap would do
    (faster); its lines are textwrap's for any text, with and without a first line shortened."""
    assert _wordwrap(text, width) == "\n".join(textwrap.wrap(text, width=width, break_on_hyphens=False))
    assert _wrapped_after(text, room, width, 3) == "\n   ".join(
        textwrap.wrap(text, width=width, initial_indent=" " * room, break_on_hyphens=False))


@cache
def sample_papers() -> list[Paper]:
    from digest.config import ArxivSource, HuggingFaceSource
    from digest.gather.adapters import arxiv, huggingface

    samples = Path(__file__).parent / "data" / "samples"
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return [*arxiv.parse(ArxivSource(name="a", type="arxiv", categories=["cs.LG"]),
                         (samples / "arxiv-listing.rss.xml").read_bytes(), now).papers,
            *huggingface.parse(HuggingFaceSource(name="h", type="huggingface"),
                               (samples / "hf-daily-papers.json").read_bytes(), now).papers]


def test_wrapping_the_samples_writes_what_textwrap_writes():
    """The same over real text: every sample title, abstract and summary, and why-lines."""
    texts = [text for paper in sample_papers() for text in (paper.title, paper.abstract, paper.ai_summary or "")]
    texts += [f'Why: matched "{t}" in title; {n} upvotes · also in Efficient inference' for t, n in zip(texts[:50], range(50))]
    assert len(texts) > 300
    for text in texts:
        for width in (72, 76):
            assert _wordwrap(text, width) == "\n".join(textwrap.wrap(text, width=width, break_on_hyphens=False)), text
            assert _wrapped_after(text, 4, width, 3) == "\n   ".join(
                textwrap.wrap(text, width=width, initial_indent="    ", break_on_hyphens=False))


# The highlighting rule written plainly (a scan of every token per set of terms): what spans()
# finds through its per-text lookups (the ranges found are merged the same way).
def reference_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """spans() the slow way."""
    if not terms or not text:
        return []
    tokens = _tokens(text)
    phrases: list[tuple[str, ...]] = []
    compounds: set[str] = set()  # phrases written as one word
    prefixes: list[str] = []
    for term in terms:
        key = shown_term_key(term)
        if key is None:
            continue
        sequence, is_prefix = key
        if is_prefix:
            prefixes.append(sequence[0])
        else:
            phrases.append(sequence)
            if len(sequence) > 1:
                compounds.add(joined(term))
    flat = [(i, s) for i, (_, _, _, stems) in enumerate(tokens) for s in stems]
    stems = [s for _, s in flat]
    found: list[tuple[int, int]] = []
    for phrase in phrases:
        n, first = len(phrase), phrase[0]
        position = -1
        while True:
            try:
                position = stems.index(first, position + 1)
            except ValueError:
                break
            if n == 1 or tuple(stems[position:position + n]) == phrase:
                # each word on its own: what lies between them ("(KV) cache") is not the term
                found += [tokens[flat[p][0]][:2] for p in range(position, position + n)]
    if compounds or prefixes:
        for start, end, parts, _stems in tokens:
            if (compounds and stem("".join(parts)) in compounds) or any(
                    p.startswith(prefix) for p in parts for prefix in prefixes):
                found.append((start, end))
    return merged(text, found)




_HIGHLIGHT_WORDS = st.lists(st.sampled_from(["KV", "cache", "caches", "KV-cache", "KVCache", "(KV)", "quantized", "quantization",
                                             "Quantiz", "reward", "models", "model", "LLM", "LLMs", "state-of-the-art", "state",
                                             "of", "the", "art", "/", "-", "é", "x" * 20, ",", "Reward-Model"]),
                            max_size=40).map(" ".join)
_HIGHLIGHT_TERMS = st.lists(st.sampled_from(["KV cache", "quantiz*", "cache", "LLM", "reward model*", "state of the art",
                                             "reward model", "model", "art", "", "*"]), max_size=4)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")) * 4, deadline=None)
@given(text=_HIGHLIGHT_WORDS, terms=_HIGHLIGHT_TERMS)
def test_highlighted_spans_are_the_plain_rules(text, terms):
    assert spans(text, terms) == reference_spans(text, terms)


@settings(max_examples=int(os.environ.get("DIGEST_HYPOTHESIS_EXAMPLES", "150")) * 4, deadline=None)
@given(text=st.one_of(st.text(alphabet=" .=~-_/:<>\"'#&;aZ09\t\x7f", max_size=240),
                      st.integers(0, 240).map(lambda n: "https://digest.example.org/rate/" + "aZ0~-_"[n % 6] * n)))
def test_plain_pieces_are_written_as_quoted_printable_writes_them(text):
    """The pieces taken as they are (ASCII, printable, no "=", nothing to escape at the end)
    come out as the remembered encoder writes them; the others are left to it."""
    plain = plain_segment(text)
    if plain is not None:
        assert plain == _encoded_segment(text)
    else:
        assert "=" in text or "\t" in text or "\x7f" in text or text.endswith((" ", "."))


def test_message_id_is_stable_for_one_digest():
    digest = make_digest([paper(1)])
    composer = Composer(config(), secret="s", renderer=renderers()[1])
    first = composer.email(digest, subscriber(), key="2026-11-22").message["Message-ID"]
    again = composer.email(digest, subscriber(), key="2026-11-22").message["Message-ID"]
    other = composer.email(digest, subscriber(), key="2026-11-23").message["Message-ID"]
    assert first == again != other


def test_no_base_url_unsubscribes_by_mail():
    cfg = Config(sender=Sender(**{"from": "Digest <digest@example.org>"}))
    email_ = Composer(cfg, secret="s", renderer=renderers()[1]).email(make_digest([paper(1)]), subscriber())
    assert email_.message["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe%20alice%40example.org>"
    assert "List-Unsubscribe-Post" not in email_.message
    assert 'href="mailto:digest@example.org?subject=unsubscribe%20alice%40example.org"' in email_.html


def manage_links(html: str, text: str) -> tuple[str | None, str | None, str | None]:
    """The manage link in an e-mail's header, its footer and its text part (None: not there)."""
    doc = lxml.html.fromstring(html)
    header = doc.xpath("//div[@class='fg'][h1]//a[text()='Manage your topics']/@href")
    footer = doc.xpath("//div[contains(@class, 'rule')]//a[text()='Manage your topics, schedule or time zone']/@href")
    lines = text.splitlines()
    text = [line.removeprefix("Manage your topics: ") for line in lines if line.startswith("Manage your topics: ")]
    assert len(header) <= 1 and len(footer) <= 1 and len(text) <= 1
    if text:  # right above the unsubscribe line
        assert lines[lines.index("Manage your topics: " + text[0]) + 1].startswith("Unsubscribe: ")
    return (header or [None])[0], (footer or [None])[0], (text or [None])[0]


@pytest.mark.parametrize("renderer", [0, 1], ids=["full-chain", "compiled"])
def test_manage_link_of_the_subscribers_generation_in_header_footer_and_text(renderer):
    from digest.render.links import manage_from_token, manage_url
    from digest.store.ledger import subscriber_key

    reader = Subscriber(email="Alice@Example.org", name="Alice", topics=[Topic(name="KV", keywords=["KV cache"])])
    composer = Composer(config(), secret="s", renderer=renderers()[renderer])
    email_ = composer.email(make_digest([paper(1), paper(2)]), reader, manage_generation=3)
    expected = manage_url("https://digest.example.org", "s", subscriber_key(reader.email), 3)
    assert expected.startswith("https://digest.example.org/manage/")
    assert manage_links(email_.html, email_.text) == (expected, expected, expected)
    assert manage_from_token("s", expected.rsplit("/", 1)[1]) == ("alice@example.org", 3)
    assert "alice" not in expected and "example.org/manage/" in expected  # opaque: no address in the URL
    footer = lxml.html.fromstring(email_.html).xpath("//div[contains(@class, 'rule')]")[0].text_content()
    assert "reply to this e-mail" not in footer and "Unsubscribe from these e-mails" in footer
    assert "reply to this e-mail" not in email_.text

    first = composer.email(make_digest([paper(1)]), reader)  # no generation given: 0 (a preview's)
    assert manage_from_token("s", manage_links(first.html, first.text)[0].rsplit("/", 1)[1]) == ("alice@example.org", 0)
    empty = composer.email(Digest("alice@example.org", "Alice", NOW, NOW - timedelta(days=1), ()), reader,
                           manage_generation=3)
    assert manage_links(empty.html, empty.text) == (expected, expected, expected)  # "nothing new" digests too


@pytest.mark.parametrize("reply_to", ["admin@example.org", None])
def test_without_base_url_no_manage_link_and_the_reply_text_stays(reply_to):
    cfg = Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>", "reply_to": reply_to}))
    digest = make_digest([paper(1), paper(2)])
    slow, fast = both(digest, cfg)
    assert fast.html == slow.html and fast.text == slow.text
    email_ = Composer(cfg, secret="s", renderer=renderers()[1]).email(digest, subscriber(), manage_generation=3)
    assert email_.html == fast.html and email_.text == fast.text  # the generation changes nothing here
    assert manage_links(email_.html, email_.text) == (None, None, None)
    assert "/manage/" not in email_.html and "/manage/" not in email_.text and "Manage your" not in email_.text
    footer = lxml.html.fromstring(email_.html).xpath("//div[contains(@class, 'rule')]")[0].text_content()
    assert "for: KV. To change your topics or limits, reply to this e-mail." in footer
    assert "\nTo change your topics or limits, reply to this e-mail.\nUnsubscribe: mailto:" in email_.text


def test_compiled_equals_full_chain_with_and_without_the_manage_link():
    digest = make_digest([paper(n, upvotes=n) for n in range(1, 6)], topics=("KV", "Other"))
    with_link = both(digest)
    without = both(digest, Config(sender=Sender(**{"from": "Digest <digest@example.org>", "reply_to": "a@example.org"})))
    for slow, fast in (with_link, without):
        assert fast.html == slow.html and fast.text == slow.text
    assert "/manage/" in with_link[1].html and "/manage/" not in without[1].html
    probes = probe_values()  # the compiled template was checked against both branches
    assert any(p["manage_url"] for p in probes) and any(not p["manage_url"] and p["manage"] for p in probes)


def test_unsubscribe_tokens():
    token = unsubscribe_token("secret", "Alice@Example.org")
    assert email_from_token("secret", token) == "alice@example.org"
    assert token == unsubscribe_token("secret", "alice@example.org")  # stable: old links keep working
    assert email_from_token("other", token) is None
    assert email_from_token("secret", token[:-2] + "xx") is None
    assert email_from_token("secret", "garbage") is None


def test_unsubscribe_tokens_are_opaque():
    """Nothing of the address can be read from a token (proxy and access logs see tokens)."""
    email = "priya@example.org"
    token = unsubscribe_token("secret", email)
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"priya" not in decoded and "priya" not in token.lower()
    assert base64.urlsafe_b64encode(b"priya@").decode()[:8] not in token  # the old format began so
    assert unsubscribe_token("secret", "priyb@example.org")[:8] != token[:8]  # no shared structure with a neighbour
    assert "alice" not in token  # the address is not readable in the link


# ---------------------------------------------------------------- a user's own templates


def test_template_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "_paper.html.j2").write_text('<div class="card">\n{{ paper.title }\n</div>\n', encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        CompiledRenderer(tmp_path, probes=probe_values()).html(probe_values()[0])
    assert "_paper.html.j2:2" in str(caught.value)


def test_template_runtime_error_names_file_and_line(tmp_path):
    (tmp_path / "_footer.html.j2").write_text('<div class="rule">\n\n{{ no_such_value }}</div>\n', encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        NaiveRenderer(tmp_path).html(probe_values()[0])
    assert "_footer.html.j2:3" in str(caught.value) and "no_such_value" in str(caught.value)


def test_an_undefined_value_in_an_included_html_template_names_file_and_line_when_compiled(tmp_path):
    """Through the compiled renderer (every command's), not only the full chain: it was an
    "internal error: UndefinedError" with no file, and the preview's reply was empty."""
    (tmp_path / "_header.html.j2").write_text("{{ first_name }}\n" + (builtin_templates() / "_header.html.j2")
                                             .read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"_header\.html\.j2:1: 'first_name' is undefined"):
        CompiledRenderer(tmp_path, probes=probe_values())


def test_mjml_that_cannot_be_read_is_a_template_error(tmp_path):
    source = (builtin_templates() / "digest.mjml.j2").read_text(encoding="utf-8")
    (tmp_path / "digest.mjml.j2").write_text(source.replace("</mj-column>", "", 1), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"digest\.mjml\.j2 \(or a template it includes\): its MJML cannot be read"):
        CompiledRenderer(tmp_path, probes=probe_values())


def test_an_mjml_tag_mjml_does_not_know_is_an_error_at_its_line(tmp_path):
    """MJML copies it into the e-mail as it is: a misspelt button was a bare <mj-buton> tag."""
    source = (builtin_templates() / "digest.mjml.j2").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if "</mj-column>" in line)
    lines.insert(at, '        <mj-buton href="https://example.org">Lab page</mj-buton>\n')
    (tmp_path / "digest.mjml.j2").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(TemplateError, match=rf"digest\.mjml\.j2:{at + 1}: <mj-buton> is not an MJML element .*did you mean <mj-button>"):
        CompiledRenderer(tmp_path, probes=probe_values())


def test_a_value_in_an_attribute_without_attr_is_an_error_at_its_line(tmp_path):
    """It fell back to the full chain, which broke on any title with a quote: those digests
    failed at every run, and `validate` said "internal error"."""
    source = (builtin_templates() / "_paper.html.j2").read_text(encoding="utf-8")
    (tmp_path / "_paper.html.j2").write_text(source.replace('<div class="card">', '<div class="card" title="{{ paper.title }}">', 1),
                                            encoding="utf-8")
    with pytest.raises(TemplateError, match=r'_paper\.html\.j2:1: the value in title="\{\{ paper\.title \}\}" needs \|attr'):
        CompiledRenderer(tmp_path, probes=probe_values())
    (tmp_path / "_paper.html.j2").write_text(source.replace('<div class="card">', '<div class="card" title="{{ paper.title|attr }}">', 1),
                                            encoding="utf-8")
    assert CompiledRenderer(tmp_path, probes=probe_values()).compiled


def test_a_templates_folder_that_is_not_there_is_an_error_not_the_built_in_templates(tmp_path):
    """A template author whose `templates:` path had a typo saw the built-in e-mail, with no word
    (the command line: test_preview.py)."""
    with pytest.raises(TemplateError, match="templates: no such folder: .*missing"):
        NaiveRenderer(tmp_path / "missing")


def test_own_template_that_cannot_be_compiled_falls_back_to_the_full_chain(tmp_path, caplog):
    source = (builtin_templates() / "digest.mjml.j2").read_text(encoding="utf-8")
    # Jinja logic at the MJML level: one <mj-section> per section.
    source = source.replace("    <mj-section>\n      <mj-column>\n        <mj-text>\n<div class=\"fg\">",
                            "{% for s in sections %}<mj-section><mj-column><mj-text>{{ s.topic }}</mj-text></mj-column></mj-section>{% endfor %}\n"
                            "    <mj-section>\n      <mj-column>\n        <mj-text>\n<div class=\"fg\">", 1)
    (tmp_path / "digest.mjml.j2").write_text(source, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        renderer = CompiledRenderer(tmp_path, probes=probe_values())
    assert not renderer.compiled and "slower full chain" in caplog.text
    digest = make_digest([paper(1), paper(2)], topics=("A", "B"))
    slow = Composer(config(), secret="s", renderer=NaiveRenderer(tmp_path)).email(digest, subscriber())
    fast = Composer(config(), secret="s", renderer=renderer).email(digest, subscriber())
    assert fast.html == slow.html and fast.html.count("mj-column-per-100") > 4


def test_config_templates_directory_is_used(tmp_path):
    for name in ("digest.txt.j2",):
        (tmp_path / name).write_text("Custom text for {{ email }}\n", encoding="utf-8")
    cfg = config(templates=str(tmp_path))
    email_ = Composer(cfg, secret="s").email(make_digest([paper(1)]), subscriber())
    assert email_.text == "Custom text for alice@example.org\n"
    assert 'class="card"' in email_.html  # the HTML template is still the built-in one


_COMPILE = """
import hashlib, json, sys
from pathlib import Path
from digest.render.compose import probe_values
from digest.render.renderer import CompiledRenderer
folder = Path(sys.argv[1]) if len(sys.argv) > 1 else None
renderer = CompiledRenderer(folder, probes=probe_values())
html = renderer.html(probe_values()[0])
print(json.dumps({"compiled": renderer.compiled, "chain_ran": "premailer" in sys.modules,
                  "sha": hashlib.sha256(html.encode()).hexdigest(), "edited": "Edited by hand" in html}))
"""


def _compile_in_a_new_process(cache: Path, folder: Path | None = None) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", _COMPILE, *([str(folder)] if folder else [])], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_the_compiled_template_is_kept_so_the_next_process_never_runs_mjml_or_premailer(tmp_path, monkeypatch):
    from digest.render import inlined

    full_chain = NaiveRenderer().html(probe_values()[0])
    expected = hashlib.sha256(full_chain.encode()).hexdigest()
    first = _compile_in_a_new_process(tmp_path / "cache")
    second = _compile_in_a_new_process(tmp_path / "cache")
    assert first == {"compiled": True, "chain_ran": True, "sha": expected, "edited": False}
    assert second == {"compiled": True, "chain_ran": False, "sha": expected, "edited": False}
    kept = set((tmp_path / "cache" / "paper-digest" / "inlined").iterdir())
    assert len(kept) == len(probe_values()) + 1 == 6  # the template and its five probes
    # An edited template (here, in this process) is six new pages, never the kept ones.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(inlined, "_memory", {})
    own = tmp_path / "templates"
    shutil.copytree(builtin_templates(), own)
    footer = own / "_footer.html.j2"
    footer.write_text(footer.read_text(encoding="utf-8").replace("</div>", " Edited by hand</div>", 1), encoding="utf-8")
    edited = CompiledRenderer(own, probes=probe_values())
    assert edited.compiled and "Edited by hand" in edited.html(probe_values()[0])
    assert len(set((tmp_path / "cache" / "paper-digest" / "inlined").iterdir()) - kept) == 6
    # A cache folder that cannot be written (a file in its way): the chain runs, nothing else changes.
    (tmp_path / "blocked").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    monkeypatch.setattr(inlined, "_memory", {})
    blocked = CompiledRenderer(probes=probe_values())
    assert blocked.compiled and blocked.html(probe_values()[0]) == full_chain
    # No home folder at all (a user without a passwd entry, in a container): the same
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    monkeypatch.setattr(inlined, "_memory", {})
    homeless = CompiledRenderer(probes=probe_values())
    assert homeless.compiled and homeless.html(probe_values()[0]) == full_chain


def test_html_stays_under_gmails_clipping_with_a_margin():
    # Gmail clips an HTML body over ~102 KB; the budget is 90,000 bytes, written here on purpose
    # rather than read from the code under test.
    assert HTML_BUDGET == 90_000
    many = [paper(n, abstract=f"Paper {n} about the KV cache. " + "Long words here again. " * 60) for n in range(1, 201)]
    email_ = Composer(config(), secret="k").email(make_digest(many), subscriber())
    assert 80_000 < email_.html_bytes <= 90_000  # full up to the budget, never over
    assert email_.cards < 200 and email_.linked == 200 - email_.cards  # the rest are links, none lost


def test_a_digest_of_500_papers_says_what_its_html_leaves_out_and_its_text_lists_them_all():
    """max_papers may be 500: even their links outgrow the budget. 125 of them vanished from
    both parts, without a word (the subject said 500)."""
    many = [paper(n, title=f"Paper {n}: a long title on large language models and their many uses in practice, "
                           "as titles go") for n in range(1, 501)]
    email_ = Composer(config(), secret="k").email(make_digest(many), subscriber())
    doc = lxml.html.fromstring(email_.html)
    linked = doc.xpath("//h2[@id='more']/following-sibling::ul[1]//a")
    left_out = 500 - email_.cards - len(linked)
    assert email_.html_bytes <= HTML_BUDGET and 0 < left_out < 100
    assert f"And {left_out} more, too many for one e-mail: its plain-text version lists them all." in doc.text_content()
    assert all(f"Paper {n}: a long" in email_.text for n in range(1, 501))


def test_tokens_are_url_safe_without_padding():
    for address in ("a@b.c", "alice@example.org", "a.much.longer.address@subdomain.example.org", "x" * 60 + "@e.org"):
        token = unsubscribe_token("secret", address)
        assert re.fullmatch(r"[A-Za-z0-9_~-]+", token), token  # nothing a URL or a mail client could mangle


# SpamAssassin's __BITCOIN_ID (72_active.cf), as it reads a message's text
BITCOIN_ID = re.compile(r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
                        r"|bc1[acdefghjklmnpqrstuvwxyz234567890]{30,90})\b")


def test_no_token_reads_as_a_bitcoin_address():
    """Written whole, about one token in 2,500 had a stretch SpamAssassin takes for a Bitcoin
    address (+1, +2 with "bomb" in the text): one digest in fifty, at a few dozen links each."""
    from digest.render.links import _b64, _unb64, rating_token, seal

    tokens = [rating_token("secret", "alice@example.org", f"2406.{n:05d}", "Topic", 1) for n in range(20_000)]
    tokens += [seal("secret", "manage", f"0:reader{n}@example.org") for n in range(5_000)]
    assert not [t for t in tokens if BITCOIN_ID.search(t)]
    assert sum(bool(BITCOIN_ID.search(_b64(_unb64(t.replace("~", ""))))) for t in tokens) > 0  # as they were written
    runs = [t.split("~") for t in tokens]  # runs of 24, the last of 1 to 24
    assert all(len(r) == 24 for run in runs for r in run[:-1]) and all(0 < len(run[-1]) <= 24 for run in runs)


@pytest.mark.parametrize("tamper", [
    lambda t: "", lambda t: t[:-1], lambda t: t[:10], lambda t: t + "A", lambda t: t + "==", lambda t: "A" + t,
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), lambda t: t.upper(), lambda t: t + ".", lambda t: "." + t,
])
def test_tampered_tokens_are_refused(tamper):
    token = unsubscribe_token("secret", "alice@example.org")
    assert email_from_token("secret", tamper(token)) is None


def test_legacy_tokens_need_their_whole_signature():
    import hashlib
    import hmac

    def legacy(email: str, secret: str = "secret") -> str:
        sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), email.encode(), hashlib.sha256).digest()[:18])
        return base64.urlsafe_b64encode(email.encode()).decode().rstrip("=") + "." + sig.decode().rstrip("=")

    good = legacy("alice@example.org")
    assert email_from_token("secret", good) == "alice@example.org"
    address, signature = good.split(".")
    for bad in ("", signature[:1], signature[:-1], signature + "A", "A" + signature, signature[::-1]):
        assert email_from_token("secret", f"{address}.{bad}") is None, bad
    other = base64.urlsafe_b64encode(b"bob@example.org").decode().rstrip("=")
    assert email_from_token("secret", f"{other}.{signature}") is None  # alice's signature, bob's address
    assert email_from_token("secret", legacy("alice@example.org", "other-key")) is None


def test_a_token_is_for_one_purpose():
    from digest.render.links import _b64, _unb64, seal, unseal

    token = seal("secret", "unsubscribe", "alice@example.org")
    assert unseal("secret", "unsubscribe", token) == "alice@example.org"
    whole = _b64(_unb64(token.replace("~", "")))  # as tokens were written before the runs: still honoured
    assert "~" in token and unseal("secret", "unsubscribe", whole) == "alice@example.org"
    assert unseal("secret", "unsubscribe", token.replace("~", "~~")) is None  # one spelling each, no more
    assert unseal("secret", "manage", token) is None
    assert seal("secret", "manage", "alice@example.org") != token


def test_unsubscribe_links_exactly():
    from digest.render.links import unsubscribe_mailto, unsubscribe_url

    token = unsubscribe_token("k", "alice@example.org")
    assert unsubscribe_url("https://digest.example.org", "k", "Alice@Example.org") == \
        f"https://digest.example.org/unsubscribe/{token}"
    assert unsubscribe_url("https://digest.example.org/lab/", "k", "alice@example.org") == \
        f"https://digest.example.org/lab/unsubscribe/{token}"
    assert unsubscribe_url(None, "k", "alice@example.org") is None
    assert unsubscribe_url("", "k", "alice@example.org") is None
    assert unsubscribe_mailto("admin@example.org", "alice+x@example.org") == \
        "mailto:admin@example.org?subject=unsubscribe%20alice%2Bx%40example.org"


def test_fit_keeps_the_best_cards_that_fit():
    from digest.render.compose import fit
    from digest.render.email_context import build_context

    papers = [paper(n, abstract=f"Paper {n} about the KV cache. " + "Words. " * 200) for n in range(1, 31)]
    context = build_context(make_digest(papers))
    renderer = renderers()[1]
    everything = renderer.html(context.values)
    size = len(everything.encode())
    values, html, cards = fit(context, renderer, budget=size)  # exactly enough: all cards
    assert cards == 30 and values["more"] == [] and html == everything
    values, html, cards = fit(context, renderer, budget=size - 1)  # one byte less: one card fewer at least
    assert cards < 30 and len(html.encode()) <= size - 1 and len(values["more"]) == 30 - cards
    kept = [p["title"] for s in values["sections"] for p in s["papers"]]
    assert kept == [p.title for p in papers[:cards]]  # the best-ranked ones (ranked by score here)
    for keep in (1, 12, 29):  # the largest count that fits, not merely one that does
        exact = len(renderer.html(with_kept(context, keep)).encode())
        assert fit(context, renderer, budget=exact)[2] == keep and fit(context, renderer, budget=exact - 1)[2] == keep - 1
    values, html, cards = fit(context, renderer, budget=9_000)  # links alone are too many: fewer links
    linked = lxml.html.fromstring(html).xpath("//h2[@id='more']/following-sibling::ul[1]//a")
    assert cards == 0 and len(html.encode()) <= 9_000 and 0 < len(linked) < 30
    assert f"And {30 - len(linked)} more, too many for one e-mail" in html
    assert len(values["more"]) == 30  # the text part's: every paper
    links = with_kept(context, 0)

    def links_html(count: int) -> str:
        return renderer.html({**links, "more": links["more"][:count], "more_left_out": 30 - count})

    for count in (0, 1, 7, 20):  # as many links as fit, exactly (none, when none does)
        exact = len(links_html(count).encode())
        for budget, expected in ((exact, count), (exact - 1, count - 1)):
            if expected >= 0:
                values, html, cards = fit(context, renderer, budget=budget)
                assert cards == 0 and html == links_html(expected) and len(html.encode()) <= budget


# ---------------------------------------------------------------- speed without a change of output


def test_a_cached_fragment_is_rendered_once_per_value_and_never_for_another():
    from digest.render.renderer import environment

    rendered = []
    env = environment(html=False)
    env.globals["seen"] = lambda p: rendered.append(p["t"]) or ""
    template = env.from_string("{% for p in ps %}{% cache p %}[{{ p.t }}{{ seen(p) }}]{% endcache %}{% endfor %}")
    a, b = {"t": "a"}, {"t": "b"}
    assert template.render(ps=[a, b, a, a]) == "[a][b][a][a]"
    assert template.render(ps=[b, a]) == "[b][a]" and rendered == ["a", "b"]
    # equal contents, another value: rendered for itself (the key is identity, not contents)
    for n in range(50):  # fresh dicts, whose ids Python reuses once the old ones are gone
        assert template.render(ps=[{"t": f"x{n}"}]) == f"[x{n}]"
    assert len(rendered) == 52


def test_cards_shared_by_digests_render_as_if_each_were_rendered_alone():
    naive, compiled = renderers()
    papers = [paper(n) for n in range(1, 7)]
    digests = [make_digest(papers[:4]), make_digest(papers[2:], why='matched "KV cache" in abstract'),
               make_digest(papers[1:5], topics=("KV", "Other"))]
    warm = [Composer(config(), secret="s", renderer=compiled).email(d, subscriber()) for d in digests * 2]
    for digest, email_ in zip(digests * 2, warm):
        fresh = Composer(config(), secret="s", renderer=CompiledRenderer(probes=[])).email(digest, subscriber())
        alone = Composer(config(), secret="s", renderer=naive).email(digest, subscriber())
        assert email_.html == fresh.html == alone.html and email_.text == fresh.text == alone.text
    assert 'matched "KV cache" in abstract' in warm[1].html and 'in abstract' not in warm[0].html


def test_a_misspelt_value_is_still_an_error_with_its_line(tmp_path):
    (tmp_path / "_paper.html.j2").write_text('<div class="card">\n{{ paper.titel }}\n</div>\n', encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        NaiveRenderer(tmp_path).html(probe_values()[0])
    assert "_paper.html.j2:2" in str(caught.value) and "titel" in str(caught.value)
