"""One subscriber's digest to a finished e-mail: values, HTML within the size budget, text,
and the MIME message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any

from ..config import Config, Subscriber
from ..models import Digest, DigestEntry, Paper, Section
from ..store.ledger import subscriber_key
from .email_context import EmailContext, RatingLink, Sender, build_context, clean_url, with_kept
from .links import RatingLinks, manage_url, unsubscribe_mailto, unsubscribe_url
from .message import MESSAGE_POLICY, message_id, wire_message
from .renderer import CompiledRenderer, NaiveRenderer

# Gmail clips HTML bodies over ~102 KB, hiding what follows (the unsubscribe link).
HTML_BUDGET = 90_000


@dataclass(frozen=True)
class Email:
    subscriber: str
    subject: str
    preheader: str
    html: str
    text: str
    cards: int  # papers shown in full
    linked: int  # papers only linked, to keep within the size budget
    wire: bytes  # the message as it goes to the server
    envelope: tuple[str, str]  # its sender's and recipient's addresses

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @cached_property
    def message(self) -> EmailMessage:
        """The message as an object (for previews and tests; sending uses `wire`)."""
        parsed = BytesParser(policy=MESSAGE_POLICY).parsebytes(self.wire)
        assert isinstance(parsed, EmailMessage)
        return parsed


def fit(context: EmailContext, renderer: NaiveRenderer, budget: int = HTML_BUDGET) -> tuple[dict[str, Any], str, int]:
    """The values and HTML with as many full cards as fit in `budget` bytes (best-ranked
    first); the others become links. Binary search: a handful of renders at most."""
    html = renderer.html(context.values)
    total = context.cards
    if len(html.encode("utf-8")) <= budget:
        return context.values, html, total
    low, high = 0, total - 1  # the largest count of cards that fits is in [low, high]
    best = with_kept(context, 0)
    best_html = renderer.html(best)
    while low < high:
        middle = (low + high + 1) // 2
        values = with_kept(context, middle)
        candidate = renderer.html(values)
        if len(candidate.encode("utf-8")) <= budget:
            low, best, best_html = middle, values, candidate
        else:
            high = middle - 1
    if low == 0 and len(best_html.encode("utf-8")) > budget:  # even the links alone are too many
        every, low_links, high_links = best["more"], 0, len(best["more"]) - 1  # as many links as fit, likewise
        while low_links < high_links:
            middle = (low_links + high_links + 1) // 2
            if len(renderer.html({**best, "more": every[:middle], "more_left_out": len(every) - middle})
                   .encode("utf-8")) <= budget:
                low_links = middle
            else:
                high_links = middle - 1
        best_html = renderer.html({**best, "more": every[:low_links], "more_left_out": len(every) - low_links})
        # The HTML says how many links it left out; the text part, which no client clips,
        # keeps every one of them (these values are the text part's)
    return best, best_html, low


class Composer:
    """Renders e-mails for one configuration; the templates are compiled once."""

    def __init__(self, config: Config, *, secret: str = "", renderer: NaiveRenderer | None = None,
                 budget: int = HTML_BUDGET) -> None:
        self.config = config
        self.secret = secret
        self.budget = budget
        directory = Path(config.resolve_local(config.templates)) if config.templates else None
        self.renderer = renderer or CompiledRenderer(directory, probes=probe_values())
        name, address = parseaddr(config.sender.from_)
        self.sender_address = address
        self.sender = Sender(
            name=name or config.sender.list_name,
            list_name=config.sender.list_name,
            manage=("To change your topics or limits, reply to this e-mail."
                    if config.sender.reply_to or address else ""),
        )

    def unsubscribe_links(self, subscriber: Subscriber) -> tuple[str | None, str]:
        """The signed HTTPS link (None without base_url) and the mailto: fallback."""
        return (unsubscribe_url(self.config.base_url, self.secret, subscriber.email),
                unsubscribe_mailto(self.config.sender.reply_to or self.sender_address, subscriber.email))

    def manage_link(self, subscriber: Subscriber, generation: int = 0) -> str | None:
        """The subscriber's settings page (the subscription centre), or None without base_url.
        `generation`: the manage-link generation on their directory row (a fresh link asked
        for moves it on, and the older links then expire)."""
        if not self.config.base_url:
            return None
        return manage_url(self.config.base_url, self.secret, subscriber_key(subscriber.email), generation)

    def values(self, digest: Digest, subscriber: Subscriber,
               links: tuple[str | None, str] | None = None, *, manage_generation: int = 0) -> EmailContext:
        timezone = subscriber.timezone or self.config.defaults.timezone
        link, mailto = links or self.unsubscribe_links(subscriber)
        return build_context(digest, timezone=timezone, unsubscribe_url=link or mailto, sender=self.sender,
                             topics=[t.name for t in subscriber.topics],
                             manage_url=self.manage_link(subscriber, manage_generation),
                             rating=self.rating_links(subscriber))

    def rating_links(self, subscriber: Subscriber) -> RatingLink | None:
        """What makes the subscriber's "more like this" / "not for me" links (None without base_url)."""
        base_url = self.config.base_url
        if not base_url:
            return None
        return RatingLinks(base_url, self.secret, subscriber.email)

    def email(self, digest: Digest, subscriber: Subscriber, *, key: str | None = None, to: str | None = None,
              manage_generation: int = 0) -> Email:
        """The finished e-mail. `key` identifies this digest (its Message-ID): the same key
        gives the same Message-ID, so a retried send is recognisably the same message. `to`:
        addressed there instead (`digest send --to`, for testing). `manage_generation`: the
        subscriber's manage-link generation (`Listed.manage_generation`; 0 without a
        directory row: valid until they first ask for a fresh link)."""
        link, mailto = self.unsubscribe_links(subscriber)
        context = self.values(digest, subscriber, (link, mailto), manage_generation=manage_generation)
        values, html, cards = fit(context, self.renderer, self.budget)
        text = self.renderer.text(values)
        wire = wire_message(
            sender=self.config.sender.from_, reply_to=self.config.sender.reply_to, to=to or subscriber.email,
            to_name=None if to else subscriber.name, subject=values["subject"], text=text, html=html,
            date=digest.generated_at, msg_id=message_id(self.config.sender.from_, subscriber.email,
                                                       key or digest.generated_at.isoformat()),
            # as the body writes them: a header is ASCII (an IDN host as punycode, the rest %-encoded)
            unsubscribe_url=clean_url(link), unsubscribe_mailto=clean_url(mailto), lang=values["lang"],
            list_name=values["list_name"],
        )
        return Email(subscriber.email, values["subject"], values["preheader"], html, text, cards,
                     len(values["more"]), wire, (parseaddr(self.config.sender.from_)[1], to or subscriber.email))


# ---------------------------------------------------------------- probes


HOSTILE = '<script>alert("x")</script> {{ 7*7 }} {% if %} <b>unclosed & "quoted" \'single\' שלום 🙂'


def probe_values() -> list[dict[str, Any]]:
    """Values that exercise every branch of a template: full cards with every optional field,
    hostile text, omitted counts, links-only papers, with a manage link and rating links and
    with the reply text and no rating links instead, and an empty digest."""
    now = datetime(2026, 1, 1, 7, 30, tzinfo=UTC)

    def entry(n: int, **extra: Any) -> DigestEntry:
        paper = Paper(id=f"2601.0000{n}", title=f"Probe paper {n}: {HOSTILE}", url=f"https://arxiv.org/abs/2601.0000{n}",
                      authors=tuple(f"Author {i}" for i in range(n + 2)), abstract=f"About KV caches. {HOSTILE}",
                      categories=("cs.CL", "cs.LG"), first_seen_at=now - timedelta(hours=n), **extra)
        return DigestEntry(paper, 0.9 - n / 10, f'matched "KV cache" in abstract; {HOSTILE}', ("KV cache",),
                           ("Other",) if n % 2 else ())

    full = [entry(1, upvotes=12, comments=3, pdf_url="https://arxiv.org/pdf/2601.00001",
                  hf_url="https://huggingface.co/papers/2601.00001", code_url="https://github.com/x/y?a=1&b=2",
                  ai_summary=f"A summary. {HOSTILE}"),
            entry(2, upvotes=1, comments=1), entry(3), entry(4)]
    digest = Digest("probe@example.org", f"Probe {HOSTILE}", now, now - timedelta(days=1), (
        Section(f"Topic {HOSTILE}", tuple(full[:2]), omitted=2),
        Section("Trending", tuple(full[2:]), trending=True)), omitted=2)
    empty = Digest("probe@example.org", None, now, now - timedelta(days=1), ())
    context = build_context(digest, unsubscribe_url="https://example.org/unsubscribe?email=a%40b&token=x",
                            topics=["Topic", HOSTILE], manage_url="https://example.org/manage/Ab-c_9?x=1&y=2",
                            rating=lambda paper, topic: (f"https://example.org/rate/1-{paper}?t={topic}&x=1",
                                                          f"https://example.org/rate/-1-{paper}?t={topic}&x=1"))
    # Without base_url: no manage link nor rating links, the footer's reply text instead (and
    # neither, in the last).
    replying = build_context(digest, unsubscribe_url="mailto:list@example.org?subject=unsubscribe%20a%40b",
                             sender=Sender(manage=f"To change your topics, reply. {HOSTILE}"), topics=["Topic"])
    return [context.values, with_kept(context, 2), {**with_kept(context, 0), "more_left_out": 3}, replying.values,
            build_context(empty).values]
