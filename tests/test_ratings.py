"""The reader's ratings: "more like this" / "not for me" under each paper of a topic in the
e-mail, the landing page behind those links (GET asks, POST records, undo takes it back), the
manage page's list of them, export and delete; and the store underneath."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import lxml.html
import pytest

from digest.config import Config, Sender, Subscriber, Topic
from digest.match.learned import Learned
from digest.models import Listing, Paper
from digest.render.compose import Composer, probe_values
from digest.render.email_context import clean_url
from digest.render.links import (
    RatingLinks,
    paper_rating_token,
    rating_from_token,
    rating_token,
    rating_url,
    seal,
    unsubscribe_token,
)
from digest.store import Store
from digest.store.ratings import Ratings

from . import test_render as render
from .conftest import fresh_database
from .test_centre import Site, subscribed
from .test_centre import site as centre_site  # noqa: F401 - the fixture: the centre on its real server

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)

T0 = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


def test_one_rating_per_subscriber_and_paper_newest_first_and_forgotten(tmp_path):
    store = Store(fresh_database(tmp_path))
    store.migrate()
    ratings = Ratings(store)
    assert ratings.rate(" Ada@Example.org ", "2611.00001", "KV", 1, T0)
    assert not ratings.rate("ada@example.org", "2611.00001", "KV", 1, T0 + timedelta(hours=1))  # the same again
    assert ratings.rate("ada@example.org", "2611.00002", "KV", -1, T0 + timedelta(hours=2))
    assert ratings.rate("ada@example.org", "2611.00001", "Other", -1, T0 + timedelta(hours=3))  # a changed mind
    assert ratings.rate("bob@example.org", "2611.00001", "KV", 1, T0)
    mine = ratings.of("ADA@example.org")
    assert [(r.paper, r.topic, r.value) for r in mine] == [("2611.00001", "Other", -1), ("2611.00002", "KV", -1)]
    assert mine[0].rated_at == T0 + timedelta(hours=3) and mine[0].subscriber == "ada@example.org"
    with pytest.raises(ValueError):
        ratings.rate("ada@example.org", "2611.00003", "KV", 2, T0)
    assert ratings.remove("ada@example.org", "2611.00002") and not ratings.remove("ada@example.org", "2611.00002")
    assert ratings.forget("ada@example.org") == 1
    assert ratings.of("ada@example.org") == [] and len(ratings.of("bob@example.org")) == 1


# ---------------------------------------------------------------- the links in the e-mail


def rating_links(html: str, text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """Per card of the HTML: (its title, its "More like this" link, its "Not for me" link), "" for
    one not there; and the text part's (label, link) lines, in order."""
    doc = lxml.html.fromstring(html)
    cards = []
    for card in doc.xpath("//div[@class='card'][h3]"):
        more = card.xpath(".//a[text()='More like this']/@href")
        less = card.xpath(".//a[text()='Not for me']/@href")
        assert len(more) <= 1 and len(less) <= 1
        cards.append((card.xpath("h3")[0].text_content(), (more or [""])[0], (less or [""])[0]))
    lines = re.findall(r"^   (More like this|Not for me): (\S+)$", text, re.MULTILINE)
    return cards, lines


def decoded(url: str) -> tuple[str, str, str, int] | None:
    assert url.startswith("https://digest.example.org/rate/"), url
    word, token = url.removeprefix("https://digest.example.org/rate/").split("/")
    return rating_from_token("s", token, word)


@pytest.mark.no_postgresql
@pytest.mark.parametrize("renderer", [0, 1], ids=["full-chain", "compiled"])
def test_every_topic_paper_carries_both_rating_links_and_trending_none(renderer):
    papers = [render.paper(n) for n in range(1, 6)]
    digest = render.make_digest(papers, topics=("KV", "Other <b>&", "Trending"))
    sections = list(digest.sections)
    sections[2] = dataclasses.replace(sections[2], trending=True)
    digest = dataclasses.replace(digest, sections=tuple(sections))
    reader = Subscriber(email="Alice@Example.org", topics=[Topic(name="KV", keywords=["KV cache"])])
    email_ = Composer(render.config(), secret="s", renderer=render.renderers()[renderer]).email(digest, reader)
    cards, lines = rating_links(email_.html, email_.text)
    assert len(cards) == 5
    expected = []
    for section in digest.sections:
        for entry in section.entries:
            if section.trending:
                expected.append((entry.paper.title, "", ""))
                continue
            more = rating_url("https://digest.example.org", "s", reader.email, entry.paper.id, section.topic, 1)
            less = rating_url("https://digest.example.org", "s", reader.email, entry.paper.id, section.topic, -1)
            assert decoded(more) == ("alice@example.org", entry.paper.id, section.topic, 1)
            assert decoded(less) == ("alice@example.org", entry.paper.id, section.topic, -1)
            expected.append((entry.paper.title, more, less))
    assert cards == expected
    assert lines == [(label, url) for _, more, less in expected if more
                     for label, url in (("More like this", more), ("Not for me", less))]
    assert "alice" not in "".join(url for _, url in lines)  # opaque
    trending = email_.text[email_.text.index("## Trending"):]
    assert "/rate/" not in trending and "More like this" not in trending


@pytest.mark.no_postgresql
def test_no_rating_links_without_base_url_and_both_renderers_agree():
    cfg = Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>", "reply_to": "admin@example.org"}))
    digest = render.make_digest([render.paper(n) for n in range(1, 4)], topics=("KV", "Other"))
    slow, fast = render.both(digest, cfg)
    assert fast.html == slow.html and fast.text == slow.text
    assert "/rate/" not in fast.html + fast.text and "More like this" not in fast.html + fast.text
    with_links = render.both(digest)
    assert with_links[0].html == with_links[1].html and with_links[0].text == with_links[1].text
    assert with_links[1].html.count("/rate/") == 6 and with_links[1].text.count("/rate/") == 6
    probes = probe_values()  # the compiled template was checked with and without them
    cards = [p for probe in probes for s in probe["sections"] for p in s["papers"]]
    assert any(p["more_url"] for p in cards) and any(not p["more_url"] for p in cards)


@pytest.mark.no_postgresql
@pytest.mark.parametrize("base_url, plain", [("https://digest.example.org/", True), ("https://example.org/d&x", False),
                                             ("https://dïgest.example.org", False), ("https://example.org/p/ä", False)])
def test_rating_links_taken_as_they_are_only_when_plain(base_url, plain):
    """A base URL that is plain makes links taken as they are (no cleaning, nothing to escape);
    any other is cleaned and escaped as every other link, and both renderers agree."""
    links = RatingLinks(base_url, "s", render.subscriber().email)
    assert links.plain is plain
    cfg = Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>"}), base_url=base_url)
    digest = render.make_digest([render.paper(n) for n in range(1, 3)])
    slow, fast = render.both(digest, cfg)
    assert fast.html == slow.html and fast.text == slow.text
    cards, lines = rating_links(fast.html, fast.text)
    expected = [clean_url(url) for entry in digest.sections[0].entries for url in links(entry.paper.id, "KV")]
    assert [url for _, more, less in cards for url in (more, less)] == expected == [url for _, url in lines]
    unsubscribe = fast.message["List-Unsubscribe"]  # a header is ASCII: the host as punycode, the rest %-encoded
    assert unsubscribe.isascii() and unsubscribe.startswith(f"<{clean_url(base_url.rstrip('/'))}/unsubscribe/")


@pytest.mark.no_postgresql
def test_cards_shared_between_readers_keep_each_readers_links():
    digest = render.make_digest([render.paper(n) for n in range(1, 4)])
    composer = Composer(render.config(), secret="s", renderer=render.renderers()[1])
    ada = composer.email(digest, Subscriber(email="ada@example.org", topics=[Topic(name="KV", keywords=["KV"])]))
    bob = composer.email(digest, Subscriber(email="bob@example.org", topics=[Topic(name="KV", keywords=["KV"])]))
    for email_, key in ((ada, "ada@example.org"), (bob, "bob@example.org")):
        cards, lines = rating_links(email_.html, email_.text)
        assert {decoded(url)[0] for _, more, less in cards for url in (more, less)} == {key}
        assert {decoded(url)[0] for _, url in lines} == {key}


@pytest.mark.no_postgresql
def test_rating_tokens_are_opaque_and_unforgeable():
    token = rating_token("s", "ada@example.org", "2611.00001", "KV\ncache", -1)
    assert rating_from_token("s", token) == ("ada@example.org", "2611.00001", "KV\ncache", -1)
    assert "ada" not in token and b"ada" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert rating_from_token("other", token) is None
    assert rating_from_token("s", token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert rating_from_token("s", unsubscribe_token("s", "ada@example.org")) is None  # another purpose
    assert rating_from_token("s", seal("s", "rate", "2\n2611.00001\nKV\nada@example.org")) is None
    with pytest.raises(ValueError):
        rating_token("s", "ada@example.org", "2611.00001", "KV", 0)
    # The links' tokens: a card's, the rating the word beside it; never another purpose's token
    card = paper_rating_token("s", "ada@example.org", "2611.00001", "KV\ncache")
    assert rating_from_token("s", card, "more") == ("ada@example.org", "2611.00001", "KV\ncache", 1)
    assert rating_from_token("s", card, "less") == ("ada@example.org", "2611.00001", "KV\ncache", -1)
    assert "ada" not in card and rating_from_token("other", card, "more") is None
    for word in ("", "1", "More", "plus", "more "):
        assert rating_from_token("s", card, word) is None
    assert rating_from_token("s", card) is None and rating_from_token("s", token, "more") is None  # each its own kind
    assert rating_from_token("s", unsubscribe_token("s", "ada@example.org"), "more") is None


@pytest.mark.no_postgresql
def test_one_subscribers_rating_links_are_the_links_made_one_by_one():
    """A digest makes a card's two links with `RatingLinks` (what they share worked out once):
    the same links as `rating_url`, which the web's tests read back."""
    links = RatingLinks("https://digest.example.org/", "s", " Ada@Example.org")
    for paper_id, topic in (("2611.00001", "KV"), ("hep-th/9901001", "Línea\nB")):
        assert links(paper_id, topic) == tuple(rating_url("https://digest.example.org", "s", "ada@example.org",
                                                          paper_id, topic, value) for value in (1, -1))
    more, less = links("2611.00001", "KV")
    assert more.replace("/rate/more/", "/rate/less/") == less  # a card's two links share one token
    assert rating_from_token("s", less.rsplit("/", 1)[1], "less") == ("ada@example.org", "2611.00001", "KV", -1)
    assert links("2611.00002", "KV")[0].rsplit("/", 1)[1] != more.rsplit("/", 1)[1]
    assert links("2611.00001", "Other")[0].rsplit("/", 1)[1] != more.rsplit("/", 1)[1]


# ---------------------------------------------------------------- the page behind the links, on the real server


def stored_paper(site: Site, paper_id: str = "2611.00042", title: str = "Sparse attention for long KV caches") -> None:
    paper = Paper(id=paper_id, title=title, url=f"https://arxiv.org/abs/{paper_id}", authors=("Ada",),
                  abstract="About KV caches.", categories=("cs.CL",))
    site.store.save_listing("test", Listing((paper,)), site.clock.now)


def rate_path(site: Site, email: str, paper: str, value: int, topic: str = "Language models") -> str:
    url = rating_url("https://digest.example.org", site.secret, email, paper, topic, value)
    return url.removeprefix("https://digest.example.org")


def test_get_asks_post_records_undo_takes_back_and_a_replay_changes_nothing(centre_site):  # noqa: F811
    site = centre_site
    visitor, _ = subscribed(site)
    stored_paper(site)
    ratings = Ratings(site.store)
    path = rate_path(site, "Me@Example.org", "2611.00042", 1)
    status, html = visitor.get(path)  # what a mail scanner does: nothing is recorded
    assert status == 200 and "Rate this paper: <b>Sparse attention for long KV caches</b> — More like this?" in html
    assert 'data-autosubmit' in html and '<script src="/static/rate.js"></script>' in html
    assert ratings.of("me@example.org") == []
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    status, html = visitor.post(path, hidden)  # what rate.js sends: no button, no action
    assert status == 200 and "Thanks — your next digests will have more papers like this." in html
    assert 'value="undo"' in html
    first = ratings.of("me@example.org")
    assert [(r.paper, r.topic, r.value) for r in first] == [("2611.00042", "Language models", 1)]
    site.clock.now += timedelta(minutes=5)
    status, html = visitor.post(path, {**hidden, "action": "rate"})  # the same POST again
    assert status == 200 and "Thanks" in html
    assert ratings.of("me@example.org") == first  # once, and not even its time moved on
    status, html = visitor.post(path, {**visitor.form(path), "action": "undo"})
    assert status == 200 and "Undone" in html and "data-autosubmit" not in html  # no second automatic rating
    assert ratings.of("me@example.org") == []
    less = rate_path(site, "me@example.org", "2611.00042", -1)
    status, html = visitor.post(less, visitor.form(less))
    assert status == 200 and "fewer papers like this" in html
    assert [(r.paper, r.value) for r in ratings.of("me@example.org")] == [("2611.00042", -1)]
    visitor.post(path, {**visitor.form(path), "action": "undo"})  # undo of the older "more": not this one
    assert [(r.paper, r.value) for r in ratings.of("me@example.org")] == [("2611.00042", -1)]
    status, script = visitor.get("/static/rate.js")
    assert status == 200 and "form.submit()" in script
    # A link of the first digests (the value sealed in its token) still rates
    first_kind = "/rate/" + rating_token(site.secret, "me@example.org", "2611.00042", "Language models", 1)
    status, html = visitor.post(first_kind, visitor.form(first_kind))
    assert status == 200 and "more papers like this" in html
    assert [(r.paper, r.value) for r in ratings.of("me@example.org")] == [("2611.00042", 1)]


def test_forged_altered_and_orphaned_tokens_and_posts_without_csrf_change_nothing(centre_site):  # noqa: F811
    site = centre_site
    visitor, _ = subscribed(site)
    ratings = Ratings(site.store)
    good = rate_path(site, "me@example.org", "2611.00042", 1)
    token = good.rsplit("/", 1)[1]
    hidden = visitor.form(good)
    forged = [rating_token("another-secret", "me@example.org", "2611.00042", "Language models", 1),
              token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), token[:-1], "x", "A" * 3000,
              unsubscribe_token(site.secret, "me@example.org"),  # genuine, for another purpose
              rating_token(site.secret, "nobody@example.org", "2611.00042", "Language models", 1)]  # no such subscriber
    forged_cards = [paper_rating_token("another-secret", "me@example.org", "2611.00042", "Language models"),
                    paper_rating_token(site.secret, "nobody@example.org", "2611.00042", "Language models"),
                    token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), token[:-1], "x", "A" * 3000,
                    unsubscribe_token(site.secret, "me@example.org"),
                    rating_token(site.secret, "me@example.org", "2611.00042", "Language models", 1)]  # the old kind
    paths = ([f"/rate/{bad}" for bad in forged] + [f"/rate/more/{bad}" for bad in forged_cards]
             + [f"/rate/{word}/{token}" for word in ("sideways", "1", "More", "")] + [f"/rate/{token}"])
    for bad in paths:
        assert visitor.get(bad)[0] in (400, 404), bad
        assert visitor.post(bad, {**hidden, "action": "rate"})[0] in (400, 404, 405, 413), bad
    assert visitor.post(good, {"action": "rate"})[0] == 403  # no CSRF field
    assert site.browser().post(good, {**hidden, "action": "rate"})[0] == 403  # another browser: not its cookie
    assert visitor.post(good, {**hidden, "action": "rate"}, {"Origin": "https://evil.example"})[0] == 403
    assert ratings.of("me@example.org") == [] and ratings.of("nobody@example.org") == []


def test_the_manage_page_lists_ratings_removes_one_and_export_and_delete_carry_them(centre_site):  # noqa: F811
    site = centre_site
    visitor, manage = subscribed(site)
    stored_paper(site)
    for paper, value in (("2611.00042", 1), ("2611.09999", -1)):  # the second: not in the store
        path = rate_path(site, "me@example.org", paper, value)
        assert visitor.post(path, visitor.form(path))[0] == 200
        site.clock.now += timedelta(minutes=1)
    status, html = visitor.get(manage)
    assert status == 200 and "Papers you rated" in html
    listed = re.findall(r'<li><form method="post">.*?</form></li>', html, re.DOTALL)
    assert len(listed) == 2
    assert "2611.09999" in listed[0] and "not for me" in listed[0]  # newest first; its id for want of a title
    assert '<a href="https://arxiv.org/abs/2611.00042">Sparse attention for long KV caches</a>' in listed[1]
    assert "Language models" in listed[1] and "more like this" in listed[1]

    data = json.loads(visitor.get(manage + "/export")[1])
    assert [(r["paper"], r["topic"], r["value"]) for r in data["ratings"]] == [
        ("2611.09999", "Language models", -1), ("2611.00042", "Language models", 1)]
    assert all(datetime.fromisoformat(r["rated_at"]) for r in data["ratings"])

    assert visitor.post(manage, {"action": "unrate", "paper": "2611.09999"})[0] == 403  # no CSRF field
    assert len(Ratings(site.store).of("me@example.org")) == 2
    status, _ = visitor.post(manage, {**visitor.form(manage), "action": "unrate", "paper": "2611.09999"})
    assert status == 303
    assert [r.paper for r in Ratings(site.store).of("me@example.org")] == ["2611.00042"]
    _, html = visitor.get(manage + "?done=unrated")
    assert "Rating removed." in html and "2611.09999" not in html

    assert visitor.post(manage + "/delete", visitor.form(manage + "/delete"))[0] == 200
    assert Ratings(site.store).of("me@example.org") == []
    path = rate_path(site, "me@example.org", "2611.00042", 1)
    assert visitor.get(path)[0] == 400  # the links in their old digests now lead nowhere


def test_a_topic_renamed_on_the_manage_page_keeps_its_ratings_and_a_rewritten_one_does_not(centre_site):  # noqa: F811
    """Ratings are kept by topic name: renaming "Speech" to "Voice" left them, and what they
    taught, under a name no topic had any more."""
    site = centre_site
    visitor, manage = subscribed(site, preset=[], topic_name_1="Speech", topic_keywords_1="speech recognition, ASR")
    stored_paper(site)
    path = rate_path(site, "me@example.org", "2611.00042", 1, topic="Speech")
    assert visitor.post(path, visitor.form(path))[0] == 200
    ratings = Ratings(site.store)
    # What the ratings taught (with one rating and no other paper stored, nothing: a model as more would leave)
    taught = Learned(("speech",), (1.5,), -1.0, 1, ("Sparse attention for long KV caches",)).to_json()
    ratings.keep_model("me@example.org", "Speech", taught, site.clock.now)
    form = {"action": "save", "schedule_kind": "daily", "schedule_time": "07:30", "timezone": "Europe/Berlin",
            "max_papers": "10", "topic_keywords_1": "speech recognition, ASR"}
    assert visitor.post(manage, {**visitor.form(manage), **form, "topic_name_1": "Voice"})[0] == 303
    assert [(r.paper, r.topic) for r in ratings.of("me@example.org")] == [("2611.00042", "Voice")]
    assert ratings.models(["me@example.org"]) == {"me@example.org": {"Voice": taught}}
    # Renamed and rewritten: another topic in the same row, which the ratings do not follow
    rewritten = {**form, "topic_name_1": "Robots", "topic_keywords_1": "robot manipulation"}
    assert visitor.post(manage, {**visitor.form(manage), **rewritten})[0] == 303
    assert [(r.paper, r.topic) for r in ratings.of("me@example.org")] == [("2611.00042", "Voice")]


def test_only_a_pure_rename_of_a_row_is_a_rename():
    from digest.subscribe.form import renames

    own = [Topic(name="Speech", keywords=["ASR"]), Topic(name="Vision", description="Images.")]

    def row(name: str, keywords: str = "", description: str = "", query: str = "") -> dict[str, str]:
        return {"name": name, "keywords": keywords, "description": description, "query": query}

    assert renames(own, [1, 2], [row("Voice", "ASR"), row("Sight", description="Images.")]) == {
        "Speech": "Voice", "Vision": "Sight"}
    assert renames(own, [1], [row("Voice", "ASR, TTS")]) == {}  # new keywords: another topic
    assert renames(own, [1], [row("Voice", "ASR", query='"speech"')]) == {}
    assert renames(own, [2], [row("Sight", description="Pictures.")]) == {}
    assert renames(own, [1, 2], [row("Vision", "ASR"), row("Speech", description="Images.")]) == {}  # a swap
    assert renames(own, [1, 3], [row("Speech", "ASR"), row("Voice", "ASR")]) == {}  # a new row, not a rename
    assert renames(own, [1], [row("", "ASR")]) == {}
    assert renames([], [1], [row("Voice", "ASR")]) == {}
