"""The subscription centre's notices: the one-off e-mails a visitor's request sends (confirm a
subscription; a link to manage one), rendered like a digest (Jinja → MJML → premailer,
compiled once per templates folder) from `notice.mjml.j2` and `notice.txt.j2`.

Nothing a visitor typed appears in them: they carry only the list's name, the link, when it
expires and the site's address (a form that mails whatever it is given to any address would
be a spam relay)."""

from __future__ import annotations

import os
from datetime import datetime
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from ..config import Config
from .compose import HOSTILE
from .email_context import clean, clean_attribute, clean_url
from .message import build_message, message_id
from .renderer import CompiledRenderer, templates_at_hand

KINDS = ("confirm", "manage")
REASONS = ("asked", "already")  # manage: a link was asked for; an address already subscribed was entered


class NoticeRenderer(CompiledRenderer):
    html_name = "notice.mjml.j2"
    text_name = "notice.txt.j2"


def notice_renderer(directory: Path | None = None) -> NoticeRenderer:
    """The notice templates of `directory` (then the built-in ones), compiled once, and again
    when a template in the folder changes (a notice is sent per request, in a long-running
    web app: an edited template is seen at the next one, without a restart)."""
    return _compiled(directory, _signature(directory))


def _signature(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """The folder's templates as (name, mtime, size): a few microseconds to read."""
    if directory is None:
        return ()
    try:
        with os.scandir(directory) as entries:
            return tuple(sorted((e.name, (st := e.stat()).st_mtime_ns, st.st_size)
                                for e in entries if e.name.endswith(".j2")))
    except OSError:
        return ()


@lru_cache(maxsize=32)
def _compiled(directory: Path | None, signature: tuple[tuple[str, int, int], ...]) -> NoticeRenderer:
    return NoticeRenderer(directory, probes=probe_values())


def subject_of(kind: str, list_name: str) -> str:
    if kind == "confirm":
        return f"Confirm your subscription to {list_name}"
    return f"Your link to manage your {list_name} subscription"


def duration(seconds: float) -> str:
    """`48 hours`, `30 minutes`, `7 days`: how long a link stays valid, as a reader counts."""
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(minutes / 60)
    if hours < 72 or hours % 24:
        return f"{hours} hours"
    return f"{hours // 24} days"


def moment(when: datetime, timezone: str) -> str:
    """`Tuesday 24 November 2026, 07:30 UTC`."""
    local = when.astimezone(ZoneInfo(timezone))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} {local.tzname()}"


def notice_values(config: Config, kind: str, link: str, *, now: datetime, expires: datetime | None = None,
                  reason: str = "asked") -> dict[str, Any]:
    """What a notice template sees (all of it from the configuration, but the link and its expiry)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
    if now.tzinfo is None or (expires is not None and expires.tzinfo is None):
        raise ValueError("now and expires need a time zone")
    url = clean_url(link)
    if not url or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("the link must be an http(s) URL")
    if expires is not None and expires <= now:
        raise ValueError("the link expires before it is sent")
    site = clean_url(config.base_url) or ""
    list_name = clean(config.sender.list_name)
    subject = subject_of(kind, list_name)
    return {
        "lang": "en",
        "kind": kind,
        "reason": reason,
        "subject": subject,
        "title": clean_attribute(subject),  # MJML writes the title into an attribute too
        "list_name": list_name,
        "link": url,
        "expires_in": duration((expires - now).total_seconds()) if expires else "",
        "expires_at": moment(expires, config.defaults.timezone) if expires else "",
        "site": site,
        "site_label": (urlsplit(site).netloc + urlsplit(site).path).rstrip("/") if site else "",
    }


def notice_message(config: Config, kind: Literal["confirm", "manage"], to: str, link: str, *,
                   now: datetime, expires: datetime | None = None, reason: str = "asked",
                   templates: Path | None = None) -> EmailMessage:
    """The notice as a MIME message, ready for SMTP. `kind`: `confirm` (the double opt-in's
    link) or `manage` (a link to the subscriber's settings; `reason="already"` when the
    address entered to subscribe was already subscribed). `templates`: a folder whose
    notice templates win (default: the configuration's `templates:`)."""
    values = notice_values(config, kind, link, now=now, expires=expires, reason=reason)
    if templates is None and config.templates:
        templates = Path(config.resolve_local(config.templates))
    renderer = notice_renderer(templates_at_hand(templates, "notices use the built-in templates"))
    html = renderer.html(values)
    text = renderer.text(values)
    sender = config.sender.from_
    message = build_message(
        sender=sender, reply_to=config.sender.reply_to, to=to, to_name=None, subject=values["subject"],
        text=text, html=html, date=now,
        # a fresh one per notice: the same link sent twice must not be folded into one message
        msg_id=message_id(sender, to, f"notice|{kind}|{reason}|{now.isoformat()}|{values['link']}"),
        unsubscribe_url=None, unsubscribe_mailto=None, lang=values["lang"], list_name=config.sender.list_name,
    )
    if "Content-Language" not in message:  # build_message's is lost (set_content clears Content-*)
        message["Content-Language"] = values["lang"]
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    return message


def probe_values() -> list[dict[str, Any]]:
    """Every branch of the notice templates, with a hostile list name and a link with a query."""
    from ..config import Sender

    now = datetime.fromisoformat("2026-01-01T07:30:00+00:00")
    config = Config(sender=Sender(**{"from": "probe@example.org", "list_name": f"Probe & {HOSTILE}"[:60]
                                     .replace("<", "").replace(">", "")}),
                    base_url="https://example.org/papers/")
    link = "https://example.org/s/confirm?token=a%2Fb&x='\"1"
    probes = [notice_values(config, kind, link, now=now, expires=now.replace(day=3), reason=reason)
              for kind in KINDS for reason in REASONS]
    bare = notice_values(config, "manage", link, now=now)
    return [*probes, {**bare, "site": "", "site_label": "", "list_name": HOSTILE, "title": clean_attribute(HOSTILE)}]
