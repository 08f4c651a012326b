"""What an e-mail template sees: a digest turned into plain, safe values.

Every string from a feed goes through `clean` (no control or direction-override characters,
one line); the only markup a value carries is the highlighting of matched terms in a TL;DR,
built here from escaped pieces. Templates never see a Paper or a Digest object.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup

from ..models import Digest, DigestEntry, Paper
from .highlight import spans
from .present import LIST_NAME, local_date, subject_line

TLDR_CHARS = 320
HIGHLIGHT_STYLE = "background-color:#fff3b0;color:inherit;padding:0 1px"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Characters that have no place in a one-line text: controls, direction overrides and
# isolates (can make a title read backwards), line/paragraph separators, zero-width noise
# except the joiners emoji need.
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_KEEP_FORMAT = {"\u200d", "\u200c"}
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def clean(text: Any) -> str:
    """One line of printable text: NFC, no control/format characters, spaces collapsed."""
    text = str(text or "")
    if text.isascii():
        return " ".join(_ASCII_CONTROL.sub(" ", text).split())
    text = unicodedata.normalize("NFC", text)
    return " ".join(_NON_ASCII.sub(_keep_or_drop, _ASCII_CONTROL.sub(" ", text)).split())


def _keep_or_drop(match: re.Match[str]) -> str:
    ch = match.group()
    category = unicodedata.category(ch)
    if category.startswith("Z"):
        return " "
    return ch if category not in _DROP_CATEGORIES or ch in _KEEP_FORMAT else ""


def clean_attribute(text: Any) -> str:
    """Text for an attribute value: as `clean`, without any mark or joiner (MJML rewrites
    those as escapes inside attributes) and with ' for ", ‹› for <> (how MJML and lxml write
    those inside attributes varies)."""
    text = clean(text).replace('"', "'").replace("<", "‹").replace(">", "›").replace("\\", "/")
    if text.isascii():
        return text
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "M" and ch not in _KEEP_FORMAT)


_URL_SAFE = "/:?#[]@!$&'()*+,;=%-._~"
# URLs that the slow path gives back unchanged (lower-case scheme, ASCII host, path and query
# of the URL alphabet): every rating link of every digest is one, ~60 a digest.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/-]*)?(?:\?[A-Za-z0-9._~%=&/-]+)?")


def clean_url(url: Any) -> str | None:
    """An http(s) (or mailto:) URL with everything outside the URL alphabet percent-encoded; else None."""
    if type(url) is str and _PLAIN_URL.fullmatch(url):
        return url
    return rebuilt_url(url)


def rebuilt_url(url: Any) -> str | None:
    """`clean_url` the long way: parsed, checked and written again."""
    text = clean(url)
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() == "mailto" and "@" in parts.path:
        return quote(text, safe=_URL_SAFE).replace("'", "%27")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    try:
        host = parts.netloc.encode("idna").decode("ascii") if not parts.netloc.isascii() else parts.netloc
    except UnicodeError:
        return None
    rebuilt = urlunsplit((parts.scheme.lower(), host, parts.path, parts.query, parts.fragment))
    return quote(rebuilt, safe=_URL_SAFE).replace("'", "%27")


# ---------------------------------------------------------------- escaping, as the HTML serialiser writes it
# The e-mail's HTML passes through lxml (premailer) last; writing values the way lxml
# serialises them keeps the compiled renderer byte-identical to the full chain.


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attribute(text: str) -> str:
    return escape_text(text).replace('"', "&quot;")


def highlighted(text: str, terms: list[str]) -> Markup:
    """`text` escaped, with the matched terms in <mark> (inline style: no stylesheet rule
    applies to it, so every renderer writes it the same)."""
    pieces, last = [], 0
    for start, end in spans(text, terms):
        pieces.append(escape_text(text[last:start]))
        pieces.append(f'<mark class="hl" style="{HIGHLIGHT_STYLE}">{escape_text(text[start:end])}</mark>')
        last = end
    pieces.append(escape_text(text[last:]))
    return Markup("".join(pieces))


# ---------------------------------------------------------------- the values


def short_authors(authors: tuple[str, ...], keep: int = 3) -> str:
    """`A, B, C … Z` for long lists."""
    names = [clean(a) for a in authors if clean(a)]
    if len(names) <= keep + 1:
        return ", ".join(names)
    return ", ".join(names[:keep]) + " … " + names[-1]


def tldr(paper: Paper, limit: int = TLDR_CHARS) -> str:
    """The Hugging Face AI summary when there is one, else the abstract's first sentences,
    cut at a word."""
    text = clean(paper.ai_summary) or clean(paper.abstract)
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        if len(kept) + len(sentence) + 1 > limit:
            break
        kept = f"{kept} {sentence}".strip()
    if kept:
        return kept
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"


@lru_cache(maxsize=16_384)
def _paper_static(paper: Paper) -> dict[str, Any]:
    """What does not depend on the subscriber; the same day's papers recur in many digests."""
    summary = tldr(paper)
    return {
        "id": paper.id,
        "title": clean(paper.title),
        "label": clean_attribute(paper.title)[:120],
        "url": clean_url(paper.url) or clean_url(f"https://arxiv.org/abs/{paper.id}") or "",
        "authors": short_authors(paper.authors),
        "categories": " · ".join(clean(c) for c in paper.categories[:3]),
        "upvotes": paper.upvotes or 0,
        "comments": paper.comments or 0,
        "tldr_text": summary,
        "pdf_url": clean_url(paper.pdf_url),
        "hf_url": clean_url(paper.hf_url),
        "code_url": clean_url(paper.code_url),
    }


@lru_cache(maxsize=65_536)
def _highlighted_summary(text: str, terms: tuple[str, ...]) -> Markup:
    """A summary highlighted for a set of terms: the same paper matched by the same words
    recurs in many subscribers' digests (Markup is immutable, so it is shared safely)."""
    return highlighted(text, list(terms))


@lru_cache(maxsize=20_000)
def paper_values(entry: DigestEntry) -> dict[str, Any]:
    """A paper's card; shared by every digest with the same entry (read-only from here on)."""
    values = dict(_paper_static(entry.paper))
    values["tldr"] = _highlighted_summary(values["tldr_text"], tuple(entry.matched_terms))
    values["why"] = clean(entry.why)
    values["also_in"] = ", ".join(clean(t) for t in entry.also_in)
    values["score"] = entry.score
    return values


def _card(entry: DigestEntry, topic: str, rate: RatingLink | None, plain: bool = False) -> dict[str, Any]:
    """A paper as this digest shows it: the shared card (`card`, what `{% cache paper.card %}`
    keys on: it is the same in every digest) and this reader's rating links ("" without)."""
    shared = paper_values(entry)
    more = less = ""
    if rate is not None:
        more, less = rate(entry.paper.id, topic)
        own = _as_markup if plain else _own_url  # plain: clean URLs with nothing to escape (links.RatingLinks)
        more, less = own(more), own(less)
    return {**shared, "card": shared, "more_url": more, "less_url": less}


# Markup(text) without Markup.__new__'s Python-level checks (for a str they change nothing):
# sixty of a digest's links are made into Markup.
_as_markup = partial(str.__new__, Markup)


def _own_url(url: str) -> str:
    """A link that is this reader's alone, cleaned; marked as needing no escape when it has
    nothing to escape (clean_url leaves only & of & < > "), so that the renderer's cache of
    escaped strings, which serves the texts that recur, is not flushed by sixty links a digest."""
    cleaned = clean_url(url) or ""
    return cleaned if "&" in cleaned else _as_markup(cleaned)


@dataclass
class Sender:
    """Who the e-mail says it is from, and how a reader changes their topics."""

    name: str = LIST_NAME
    list_name: str = LIST_NAME
    manage: str = ""
    lang: str = "en"


@dataclass
class EmailContext:
    """The values of one e-mail; `with_kept` keeps the best-ranked cards, the rest as links."""

    values: dict[str, Any]

    @property
    def cards(self) -> int:
        return sum(len(section["papers"]) for section in self.values["sections"])

    @cached_property
    def ranked(self) -> list[tuple[int, int]]:
        """(section, index) of every card, best first, ties in the order shown: worked out only
        for a digest whose cards do not all fit."""
        sections = self.values["sections"]
        shown = [(s, i) for s, section in enumerate(sections) for i in range(len(section["papers"]))]
        scores = [-card["score"] for section in sections for card in section["papers"]]
        return [shown[k] for k in sorted(range(len(shown)), key=scores.__getitem__)]  # stable: ties keep their order


RatingLink = Callable[[str, str], tuple[str, str]]  # (paper id, topic) -> its "more like this" and "not for me" links


def build_context(digest: Digest, *, timezone: str = "UTC", unsubscribe_url: str = "",
                  sender: Sender | None = None, topics: list[str] | None = None,
                  manage_url: str | None = None, rating: RatingLink | None = None) -> EmailContext:
    """`manage_url`: the subscriber's settings page (the subscription centre), shown in the
    header and footer; without one the footer keeps `sender.manage` (reply to change).
    `rating`: makes each topic paper's "more like this" / "not for me" links (not Trending's)."""
    sender = sender or Sender()
    plain = getattr(rating, "plain", False)
    sections = []
    for number, section in enumerate(digest.sections, 1):
        rate = rating if rating is not None and not section.trending else None
        sections.append({
            "topic": clean(section.topic),
            "anchor": f"topic-{number}",
            "href": f"#topic-{number}",
            "omitted": section.omitted,
            "trending": section.trending,
            "papers": [_card(e, section.topic, rate, plain) for e in section.entries],
        })
    values = {
        "lang": sender.lang,
        "subject": clean(subject_line(digest, timezone, list_name=sender.list_name)),
        "list_name": clean(sender.list_name),
        "list_label": clean_attribute(sender.list_name),  # MJML also writes the title into an attribute
        "preheader": "",
        "date_label": _date_label(digest, timezone),
        "name": clean(digest.name),
        "email": clean(digest.subscriber),
        "sender_name": clean(sender.name),
        "manage": clean(sender.manage),
        "topics": ", ".join(clean(t) for t in (topics or [])),
        "unsubscribe_url": clean_url(unsubscribe_url) or "",
        "manage_url": clean_url(manage_url) or "",
        "sections": sections,
        "more": [],
        "more_left_out": 0,  # links that did not fit either (compose.fit): the HTML says how many
        "omitted": digest.omitted,
    }
    values["summary"] = _summary(sections)
    values["preheader"] = _preheader(sections)
    return EmailContext(values)


def _date_label(digest: Digest, timezone: str) -> str:
    local = digest.generated_at.astimezone(ZoneInfo(timezone))
    return f"{local:%A}, {local_date(digest.generated_at, timezone)} {local.year}"


def _summary(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"topic": s["topic"], "href": s["href"], "count": len(s["papers"])} for s in sections if s["papers"]]


def _preheader(sections: list[dict[str, Any]]) -> str:
    """Extends the subject in the inbox list: the top paper of each topic."""
    tops = [f"{s['topic']}: {s['papers'][0]['title']}" for s in sections if s["papers"]]
    return clean(" · ".join(tops))[:200] if tops else "Nothing new matches your topics."


def with_kept(context: EmailContext, keep: int) -> dict[str, Any]:
    """The values with only the `keep` best-ranked papers as cards; the rest as links."""
    if keep >= len(context.ranked):
        return context.values
    kept = set(context.ranked[:keep])
    sections, more = [], []
    for s, section in enumerate(context.values["sections"]):
        papers = [p for i, p in enumerate(section["papers"]) if (s, i) in kept]
        more += [{"title": p["title"], "url": p["url"]} for i, p in enumerate(section["papers"]) if (s, i) not in kept]
        if papers:
            sections.append({**section, "papers": papers})
    values = {**context.values, "sections": sections, "more": more}
    values["summary"] = _summary(sections)
    return values
