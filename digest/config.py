"""subscribers.yaml → a validated, typed `Config`, with every problem located by file and line.

Contains no business logic: it says what the user asked for, not what to do with it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import unicodedata
from datetime import date, timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from .errors import ConfigError, Problem
from .ids import arxiv_id
from .query import QuerySyntaxError, parse_query
from .readfile import NotAFile, TooLarge, read_regular

DEFAULT_CONFIG = "subscribers.yaml"
CONFIG_ENV = "DIGEST_CONFIG"


# ---------------------------------------------------------------- field types


def _error(kind: str, message: str) -> PydanticCustomError:
    # Pydantic formats {name} placeholders in messages: escape braces from user input.
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def email_address(value: Any) -> str:
    """An address as subscribers.yaml takes it (a Unicode domain in its xn-- form); a located
    error otherwise. The command line checks its own arguments with it."""
    if not isinstance(value, str):
        raise PydanticCustomError("email", "expected an e-mail address")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _error("email", f"invalid e-mail address {value!r}: {exc}") from None
    if len(checked.local_part) > 64:  # RFC 5321's limit, which servers enforce and the validator let by
        raise _error("email", f"invalid e-mail address {value!r}: {len(checked.local_part)} characters before "
                     "the @-sign, at most 64")
    if checked.ascii_email is None:  # a non-ASCII local part: only SMTPUTF8 could carry it
        raise _error("email", f"{value!r}: addresses with non-ASCII characters before the @ cannot be sent "
                     "yet (they need SMTPUTF8); a non-ASCII domain is fine")
    return checked.ascii_email  # a non-ASCII domain in its IDNA (xn--) form, as SMTP needs it


def _mailbox(value: Any) -> str:
    """`Name <addr>` or a bare address; the address part must be valid."""
    if not isinstance(value, str):
        raise PydanticCustomError("mailbox", 'expected an address such as "Paper Digest <digest@example.org>"')
    _, address = parseaddr(value)
    if not address:
        raise _error("mailbox", f"invalid address {value!r}")
    email_address(address)
    return value.strip()


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("timezone", "expected an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _error("timezone", f"unknown time zone {value!r} (use an IANA name such as "
                     "Europe/Berlin or UTC)" + (_zone_of_city(value) or _suggest(value, _zone_names()))) from None
    return value


def _one_line(value: Any) -> str:
    """Text that ends up in a header (a name, the list's name): no line breaks or control characters."""
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "expected a string")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise _error("one_line", f"{value!r} has a line break or control character; write it on one line")
    if any(ch in _BIDI_CONTROLS for ch in value):  # "\u202e" shows what follows backwards: a spoofed name
        raise _error("one_line", f"{value!r} has a right-to-left override or other direction control; remove it")
    if _ENCODED_WORD.search(value):  # a mail client shows "=?utf-8?q?=41?=" as "A": another name than the one kept
        raise _error("one_line", f"{value!r} holds a MIME encoded word (=?…?=); write the text itself")
    return value


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PydanticCustomError("list_of_strings", "expected a list of strings")
    return [_one_line(v.strip()) for v in value]


def _paragraph(value: Any) -> Any:
    """Text of a few lines (a description, a query): line breaks and tabs, but no other
    control character (a NUL from a form would reach the why-lines of e-mails)."""
    if isinstance(value, str) and any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise _error("control", f"{value[:40]!r} has a control character (such as NUL); remove it")
    return value


MAX_LOOKBACK = timedelta(days=365)  # how far back a first digest may reach
MAX_GRACE = timedelta(days=7)  # a missed slot is looked for within the last eight days


def _listen(value: Any) -> str:
    match = re.fullmatch(r"([\w.\-\[\]:]*):(\d{1,5})", value) if isinstance(value, str) else None
    if not match or not 0 <= int(match.group(2)) <= 65535:  # 0: any free port (the log says which)
        raise _error("listen", f"expected host:port with a port from 1 to 65535, such as 127.0.0.1:8081, not {value!r}")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """`30s`, `30m`, `12h`, `1d`, `2w` as a timedelta; ValueError otherwise."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"expected a duration such as 12h, 1d or 2w, not {value!r}")
    amount = float(match.group(1))
    if amount > 100_000:  # beyond any calendar arithmetic (timedelta overflows)
        raise ValueError(f"{value!r} is far too long")
    return timedelta(**{_UNITS[match.group(2).lower()]: amount})


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise _error("duration", str(exc)) from None


_SCHEDULE = re.compile(
    r"^(?P<kind>daily|weekdays|weekly\s+(?P<day>mon|tue|wed|thu|fri|sat|sun)[a-z]*)\s+(?P<hh>\d{1,2}):(?P<mm>\d{2})$",
    re.IGNORECASE,
)


def _schedule(value: Any) -> str:
    match = _SCHEDULE.match(str(value).strip()) if isinstance(value, str) else None
    if not match or int(match["hh"]) > 23 or int(match["mm"]) > 59:
        raise _error("schedule", f"expected 'daily HH:MM', 'weekdays HH:MM' or 'weekly DAY HH:MM', not {value!r}")
    return " ".join(str(value).split()).lower()


_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def crontab_fields(spec: str) -> dict[str, str]:
    """Five cron fields as APScheduler's CronTrigger arguments. The day of the week is read as
    cron reads it (0 or 7 Sunday, 1 Monday … 6 Saturday; `1-5` Monday to Friday) and written
    out as names: APScheduler 3 numbers the days from Monday, so `1-5` would mean Tuesday to
    Saturday there. ValueError when the spec is not five fields."""
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected five cron fields, not {len(fields)}")
    minute, hour, day, month, weekday = fields
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": _cron_weekdays(weekday)}


def _cron_weekdays(field: str) -> str:
    if not any(ch.isdigit() for ch in field):
        return field  # *, names: the same in both
    days: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = 0, 6
        else:
            low, _, high = span.partition("-")
            first = _cron_day(low)
            last = _cron_day(high) if high else (6 if step else first)
        if last < first:
            raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(range(first, last + 1, int(step) if step else 1))
    return ",".join(_CRON_DAYS[d % 7] for d in sorted(days))


def _cron_day(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text) % 7 if int(text) != 7 else 7
    if text[:3].lower() in _CRON_DAYS:
        return _CRON_DAYS.index(text[:3].lower())
    raise ValueError(f"{text!r} is not a day of the week (0-7 or mon…sun)")


def _fetch_schedule(value: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger

    text = " ".join(str(value).split()).lower() if isinstance(value, str) else ""
    try:
        if text.startswith("every "):
            if parse_duration(text.split(None, 1)[1]).total_seconds() <= 0:
                raise ValueError(text)
        else:
            CronTrigger(**crontab_fields(text))  # APScheduler's own check of each field
    except (ValueError, TypeError, IndexError):
        raise _error("fetch", f"expected 'every 30m', 'every 1h' or five cron fields such as '0 * * * *', not {value!r}") from None
    return text


_CATEGORY = re.compile(r"^[a-z\-]+(\.([A-Za-z\-]+|\*))?$")


def _categories(value: Any) -> list[str]:
    items = _strings(value)
    for item in items:
        if not _CATEGORY.match(item):
            raise _error("category", f"{item!r} is not an arXiv category such as cs.CL, hep-th or cs.*")
    return items


Email = Annotated[str, BeforeValidator(email_address)]
OneLine = Annotated[str, BeforeValidator(_one_line)]
Mailbox = Annotated[str, BeforeValidator(_mailbox)]
TimeZoneName = Annotated[str, BeforeValidator(_timezone)]
Strings = Annotated[list[str], BeforeValidator(_strings)]
Categories = Annotated[list[str], BeforeValidator(_categories)]
def _duration_text(value: timedelta) -> str:
    """The largest whole unit (`3d`, `90m`), so the amount stays within what parse_duration reads."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:f}".rstrip("0").rstrip(".") + "s"


# Written back as seconds (`86400s`), which the validator reads again: a subscriber's settings
# round-trip through the database as JSON.
Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(_duration_text, when_used="json")]


def _at_most(limit: timedelta) -> AfterValidator:
    seconds = int(limit.total_seconds())
    unit, size = next((u, n) for u, n in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
                      if seconds % n == 0)
    said = f"{seconds // size} {unit}{'s' if seconds // size != 1 else ''}"  # "14 days", "1 hour"

    def check(value: timedelta) -> timedelta:
        if value > limit:
            raise _error("duration", f"should be at most {said}")
        return value

    return AfterValidator(check)


Lookback = Annotated[Duration, _at_most(MAX_LOOKBACK)]
Grace = Annotated[Duration, _at_most(MAX_GRACE)]
Schedule = Annotated[str, BeforeValidator(_schedule)]
SourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)]


class _Strict(BaseModel):
    # No .inf or .nan anywhere: a time-out or a rate must be a number a clock can reach.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


# ---------------------------------------------------------------- sections


class Sender(_Strict):
    from_: Mailbox = Field(alias="from")
    reply_to: Email | None = None
    # The list's name: in every subject, the e-mail's heading and footer, and List-Id (so
    # subscribers can filter on it).
    list_name: Annotated[OneLine, Field(min_length=1, max_length=60, pattern=r"^[^<>]+$")] = "Paper digest"


class Smtp(_Strict):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(default=30.0, gt=0, le=3600)
    greeting_timeout: float = Field(default=5.0, gt=0, le=600)  # a port that does not speak SMTP fails this fast
    # The wait for the server's reply to the end of a message (RFC 5321 4.5.3.2.6: 10 minutes).
    data_timeout: float = Field(default=600.0, gt=0, le=3600)
    # A message whose end went out but whose reply never came is uncertain: the server may have
    # it. `once`: sent once more, on a later run, with the same Message-ID (nothing is lost; at
    # most one duplicate, which mail clients fold); `never`: never again (nothing twice).
    resend_uncertain: Literal["once", "never"] = "once"
    verify_certificates: bool = True
    ca_file: str | None = None  # a private CA to trust (PEM), relative to this file
    rate_limit: float | None = Field(default=None, gt=0, le=100_000, description="messages per second")
    connections: int = Field(default=1, ge=1, le=16)
    retries: int = Field(default=3, ge=0, le=10)  # transient failures, per message and run
    retry_wait: float = Field(default=2.0, ge=0, le=3600)  # first back-off, doubling, in seconds
    suspend_after: int = Field(default=3, ge=1)  # consecutive permanent failures

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class _SourceBase(_Strict):
    name: SourceName
    url: str | None = None
    enabled: bool = True
    timeout: float = Field(default=30.0, gt=0, le=600)  # one connection or read
    deadline: float = Field(default=120.0, gt=0, le=3600)  # the whole download and the parse
    max_bytes: int = Field(default=20_000_000, gt=0)


class ArxivSource(_SourceBase):
    """arXiv's daily RSS/Atom listing of one or more categories (or the listing at `url`)."""

    type: Literal["arxiv"]
    categories: Categories = []
    announce_types: list[Literal["new", "cross", "replace", "replace-cross"]] = ["new", "cross"]
    format: Literal["rss", "atom"] = "rss"
    # A listing older than the day arXiv should have announced is reported as stale; off for
    # a saved capture (the demo's samples, an archive).
    warn_stale: bool = True

    @model_validator(mode="after")
    def _categories_or_url(self) -> ArxivSource:
        if not self.categories and not self.url:
            raise _error("arxiv", "an arxiv source needs `categories` (e.g. [cs.CL, cs.LG]) or a `url`")
        return self


class ArxivApiSource(_SourceBase):
    """An arXiv API search (export.arxiv.org/api/query), newest first."""

    type: Literal["arxiv-api"]
    query: str | None = Field(default=None, min_length=1)
    max_results: int = Field(default=100, ge=1, le=2000)
    request_interval: float = Field(default=3.0, ge=0, description="arXiv asks for 3 s between requests")

    @model_validator(mode="after")
    def _query_or_url(self) -> ArxivApiSource:
        if not self.query and not self.url:
            raise _error("arxiv-api", "an arxiv-api source needs a `query` (e.g. 'abs:\"KV cache\"') or a `url`")
        return self


class HuggingFaceSource(_SourceBase):
    """Hugging Face Daily Papers: the trending signal (upvotes, comments, AI summary)."""

    type: Literal["huggingface"]
    limit: int = Field(default=100, ge=1, le=1000)
    # Hugging Face gives no arXiv categories: ask the arXiv API for them (one request per
    # 100 papers, 3 s apart; once per paper, the answer kept in the store).
    fill_categories: bool = True
    categories_url: str = "https://export.arxiv.org/api/query"


class FeedSource(_SourceBase):
    """Any RSS or Atom feed, through feedparser."""

    type: Literal["feed"]
    url: str = Field(min_length=1)


SOURCE_TYPES = ("arxiv", "arxiv-api", "huggingface", "feed")
Source = Annotated[
    ArxivSource | ArxivApiSource | HuggingFaceSource | FeedSource,
    Field(discriminator="type"),
]


def _query(value: Any) -> str:
    if not isinstance(value, str):
        raise _error("query", "expected a query string such as '\"KV cache\" OR quantiz*'")
    _paragraph(value)
    if len(value) > MAX_QUERY:
        raise _error("query", f"the query is {len(value)} characters long: at most {MAX_QUERY}")
    try:
        parse_query(value)
    except QuerySyntaxError as exc:
        raise _error("query", f"{exc} in {value!r}") from None
    return value


MAX_KEYWORD = 100  # characters in one keyword (a phrase of a dozen words)
MAX_KEYWORDS = 50  # keywords (or excludes) in one topic
MAX_QUERY = 2000  # characters in one topic's query
MAX_TOPICS = 20  # topics of one subscriber
MAX_EXAMPLES = 20  # papers one topic gives as examples (a model learns from them; more adds little)
EXAMPLE_FORMS = "such as 2406.01234, arXiv:2406.01234v2 or https://arxiv.org/abs/2406.01234"


def _keywords(value: Any) -> list[str]:
    items = _strings(value)
    if len(items) > MAX_KEYWORDS:
        raise _error("keywords", f"{len(items)} keywords: a topic takes at most {MAX_KEYWORDS} (split it in two)")
    for item in items:
        if len(item) > MAX_KEYWORD:
            raise _error("keyword", f"keyword {item[:30]!r}… is {len(item)} characters long: at most {MAX_KEYWORD}")
        if not re.search(r"\w", item):
            raise _error("keyword", f"keyword {item!r} has no letters or digits to match")
        if "*" in item.rstrip("*") or (item.endswith("*") and (" " in item or len(item.rstrip("*")) < 3)):
            raise _error("keyword", f"keyword {item!r}: a wildcard may only end a single word of 3+ letters")
    return items


Keywords = Annotated[list[str], BeforeValidator(_keywords)]


def _examples(value: Any) -> list[str]:
    """arXiv ids, links or `arXiv:` labels, as ids without version, each once, in order."""
    if not isinstance(value, list):
        raise _error("examples", f"expected a list of arXiv ids, {EXAMPLE_FORMS}")
    ids: list[str] = []
    for n, item in enumerate(value, 1):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            # YAML reads 2406.01230 as the number 2406.0123: the id it meant is lost.
            raise _error("examples", f"example {n} was read as a number, which loses an id's final zeros: "
                         "write each id in quotes, e.g. ['2406.01230'], or as a link or arXiv:2406.01230")
        text = item.strip() if isinstance(item, str) else ""
        found = (arxiv_id(text, bare=True) or arxiv_id(text)) if text and not any(c.isspace() for c in text) else None
        if found is None:
            raise _error("examples", f"example {n} ({item!r}) is not an arXiv id or link: give one {EXAMPLE_FORMS}")
        if found[0] not in ids:  # 2406.01234 and its v2 link are one paper
            ids.append(found[0])
    if len(ids) > MAX_EXAMPLES:
        raise _error("examples", f"{len(ids)} examples: a topic takes at most {MAX_EXAMPLES} "
                     "(keep the ones closest to what you want)")
    return ids


Examples = Annotated[list[str], BeforeValidator(_examples)]


class Topic(_Strict):
    name: Annotated[OneLine, Field(min_length=1, max_length=200)]
    # A sentence or two on what the topic is about (shown on the sign-up page for presets).
    description: Annotated[str, BeforeValidator(_paragraph), Field(max_length=1000)] | None = None
    # The catalogue entry (`presets:`) this topic was picked from on the web: a copy of it, named.
    preset: Annotated[OneLine, Field(max_length=200)] | None = None
    # With a description: more papers (up to +3) or fewer (down to -3) than the usual closeness lets in.
    sensitivity: int = Field(default=0, ge=-3, le=3)
    # What the reader's ratings of this topic taught (match/learned.py): put here for matching
    # (subscribe/learning.py), never written to a file or a profile.
    learned: Annotated[Any, Field(exclude=True)] = None
    keywords: Keywords = []
    query: Annotated[str, BeforeValidator(_query)] | None = None
    exclude: Keywords = []
    categories: Categories = []
    authors: Strings = []
    min_upvotes: int | None = Field(default=None, ge=0)
    # Papers that are exactly what the reader wants (arXiv ids or links): a model of the topic
    # learns from them as if liked (subscribe/examples.py); they are never in a digest.
    examples: Examples = []

    @model_validator(mode="after")
    def _has_a_criterion(self) -> Topic:
        # A description is enough: papers are matched by how close they are to it, in words
        # and in meaning (keywords only add a bonus; examples move the closeness). Examples
        # alone are not: nothing would say what is close before their model does.
        if not (self.keywords or self.query or self.categories or self.authors or self.min_upvotes is not None
                or (self.description or "").strip()):
            if self.examples:
                raise _error("topic", "a topic with examples also needs a description (a sentence on what it is "
                             "about) or keywords: papers are matched by those, the examples then move them")
            raise _error("topic", "a topic needs a description (a sentence on what it is about) or keywords, "
                         "a query, categories, authors or min_upvotes")
        return self


class Backups(_Strict):
    """`digest run` copies the SQLite state once a day into `folder` (relative to this file)."""

    folder: str = "backups"
    keep: int = Field(default=7, ge=0, le=1000)  # 0: no daily backups


def _lease(value: timedelta) -> timedelta:
    if not timedelta(seconds=3) <= value <= timedelta(hours=1):
        raise _error("duration", "should be between 3s and 1h")
    return value


class Workers(_Strict):
    """How the processes sharing one database divide a send: each claims `batch` digests per
    SMTP connection at a time and holds them for `lease`, renewed while it works; a worker that
    dies (or loses the database for longer) leaves its claims to the others when the lease ends."""

    lease: Annotated[Duration, AfterValidator(_lease)] = timedelta(minutes=2)
    batch: int = Field(default=10, ge=1, le=1000)


class Defaults(_Strict):
    schedule: Schedule = "daily 07:30"
    timezone: TimeZoneName = "UTC"
    max_papers: int = Field(default=25, ge=1, le=500)
    max_per_topic: int | None = Field(default=None, ge=1)
    trending: int = Field(default=0, ge=0, le=100)
    lookback: Lookback = timedelta(days=1)
    send_empty: bool = False
    grace: Grace = timedelta(hours=12)  # a digest missed by more is skipped


def _unique_topics(value: list[Topic], info: ValidationInfo) -> list[Topic]:
    if info.context and info.context.get("stored"):  # a profile saved before the rule: still sent as it was
        return value
    seen: set[str] = set()
    for topic in value:
        if topic.name.casefold() in seen:
            raise _error("topics", f"two topics are named {topic.name!r}: give each a name of its own (a digest's "
                         "sections, the ratings and what they teach go by it)")
        seen.add(topic.name.casefold())
    return value


class Subscriber(_Strict):
    email: Email
    name: Annotated[OneLine, Field(max_length=200)] | None = None
    timezone: TimeZoneName | None = None
    schedule: Schedule | None = None
    # Names unique: a digest's sections, a rating's link and a topic's learned model go by it
    topics: Annotated[list[Topic], Field(max_length=MAX_TOPICS), AfterValidator(_unique_topics)] = []
    max_papers: int | None = Field(default=None, ge=1, le=500)
    max_per_topic: int | None = Field(default=None, ge=1)
    trending: int | None = Field(default=None, ge=0, le=100)
    lookback: Lookback | None = None
    send_empty: bool | None = None
    enabled: bool = True
    # No digests before this day (in their time zone); from it on, as before. Set on the manage page.
    paused_until: date | None = None


class SignUps(_Strict):
    """The subscription centre's sign-up page (/subscribe on `listen:`; `base_url` must be set).
    Closed unless opened: a public form that sends mail is the admin's choice to make."""

    open: bool = False
    per_client: int = Field(default=10, ge=1, le=10_000)  # sign-up and link requests per client address an hour
    per_address: int = Field(default=3, ge=1, le=100)  # e-mails to one address a day (no mail-bombing a stranger)
    per_hour: int = Field(default=200, ge=1, le=1_000_000)  # e-mails the web side sends an hour, in all


def _unique_presets(value: list[Topic]) -> list[Topic]:
    seen: set[str] = set()
    for topic in value:
        if topic.name.casefold() in seen:
            raise _error("presets", f"two presets are named {topic.name!r}: each needs a name of its own")
        seen.add(topic.name.casefold())
    return value


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


def _state_url(value: Any) -> Any:
    """A database URL the store can keep state in, for good: a SQLite file or PostgreSQL (an
    in-memory SQLite database would forget every digest sent, and send them all again)."""
    if not isinstance(value, str):
        return value
    scheme, separator, rest = value.partition("://")
    example = "sqlite:///digest.db (a file beside this one) or postgresql://user@host/database"
    if not separator:
        raise _error("state", f"{value!r} is not a database URL: write {example}")
    if scheme.lower() not in DATABASE_SCHEMES:
        raise _error("state", f"{scheme}:// databases are not supported: write {example}")
    if scheme.lower() == "sqlite" and rest.removeprefix("/") in ("", ":memory:"):
        raise _error("state", f"{value!r} names no file (an in-memory database forgets every digest sent): "
                     "write sqlite:///digest.db")
    return f"{scheme.lower()}://{rest}"


class Config(_Strict):
    sender: Sender
    smtp: Smtp = Smtp()
    state: Annotated[str, BeforeValidator(_state_url)] = "sqlite:///digest.db"
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    templates: str | None = None
    # The signing key's file (0600), kept apart from the database so that a restored or rebuilt
    # database keeps every link already mailed valid. Default with SQLite: digest.key beside
    # this file; with PostgreSQL the database keeps it (shared by every machine). $DIGEST_SECRET
    # overrides both.
    key_file: str | None = None
    backups: Backups = Backups()
    workers: Workers = Workers()
    fetch: Annotated[str, BeforeValidator(_fetch_schedule)] = "every 1h"
    # How long digests that fall due wait for a fetch under way (its papers may be for them);
    # never longer, so that a slow or hostile feed does not hold them back.
    fetch_wait: Annotated[Duration, _at_most(timedelta(hours=1))] = timedelta(seconds=30)
    listen: Annotated[str, BeforeValidator(_listen)] | None = None  # the unsubscribe endpoint of `digest run`
    # Where topics' examples are looked up by id when the store does not have them: arXiv's API
    # (or a mirror of it). Asked at most once every 3 s, as arXiv's terms of use say.
    arxiv_api: Annotated[str, Field(pattern=r"^https?://\S+$")] = "https://export.arxiv.org/api/query"
    sources: list[Source] = []
    defaults: Defaults = Defaults()
    # Topics people pick from on the sign-up and manage pages (name, description, keywords/query).
    presets: Annotated[list[Topic], AfterValidator(_unique_presets)] = []
    signups: SignUps = SignUps()
    subscribers: list[Subscriber] = []
    # Where the file was read from: relative paths (state, templates, local feeds) resolve against it.
    _path: Path = PrivateAttr(default=Path(DEFAULT_CONFIG))
    _raw: Any = PrivateAttr(default=None)  # the YAML as read, to locate later findings by line
    _subscribers_read: bool = PrivateAttr(default=True)  # False: left in the file (load_config)
    _source_sha256: str | None = PrivateAttr(default=None)  # of the file's text, when read from one

    @property
    def source_sha256(self) -> str | None:
        """The hash of the text this configuration was read from (None if made in code)."""
        return self._source_sha256

    @property
    def subscribers_read(self) -> bool:
        """Whether `subscribers` holds the file's (a worker may skip them: see load_config)."""
        return self._subscribers_read

    @property
    def path(self) -> Path:
        return self._path

    @property
    def directory(self) -> Path:
        return self._path.resolve().parent

    def database_url(self) -> str:
        """The state URL with a relative SQLite path made relative to this file."""
        prefix = "sqlite:///"
        if self.state.startswith(prefix) and not self.state.startswith(prefix + "/"):
            rest = self.state[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str(self.directory / rest)
        return self.state

    def key_path(self) -> Path | None:
        if self.key_file:
            return Path(self.resolve_local(self.key_file))
        return self.directory / "digest.key" if self.database_url().startswith("sqlite:///") else None

    def marker_path(self) -> Path | None:
        """Beside the key: says this configuration has sent digests (a lost database is noticed)."""
        key = self.key_path()
        return key.with_name(key.name + ".sent") if key is not None else None

    def backup_folder(self) -> Path:
        return Path(self.resolve_local(self.backups.folder))

    def setting(self, subscriber: Subscriber, name: str) -> Any:
        """A subscriber's own value of a setting they may override (send_empty, trending…), else the default."""
        own = getattr(subscriber, name)
        return own if own is not None else getattr(self.defaults, name)

    def line_of(self, *path: str | int) -> int | None:
        """The line in the file of a key path such as ("smtp", "password_env"), when read from a file."""
        return _line(self._raw, path) if self._raw is not None else None

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def resolve_local(self, location: str) -> str:
        """A local path in the config (not a URL) made relative to the config's folder."""
        if "://" in location:
            return location
        return str(self.directory / Path(location).expanduser())


def find_subscriber(config: Config, email: str) -> Subscriber:
    """The subscriber with this address (any case); a user error with a suggestion if none."""
    from .errors import UnknownSubscriber
    from .store.ledger import subscriber_key

    for subscriber in config.subscribers:
        if subscriber.email.lower() == subscriber_key(email):
            return subscriber
    known = [s.email for s in config.subscribers]
    close = difflib.get_close_matches(email, known, n=1)
    raise UnknownSubscriber(f"no subscriber {email!r} in {config.path}",
                            hint=f"did you mean {close[0]!r}?" if close else f"subscribers: {', '.join(known[:5]) or 'none'}")


# ---------------------------------------------------------------- loading


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: the explicit one, else $DIGEST_CONFIG, else ./subscribers.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str] | None = None, *, locate: bool = False,
                subscribers: bool = True) -> Config:
    """Read and validate the file; raise `ConfigError` listing every problem at once.
    `locate`: keep the YAML's line numbers for later findings (`digest validate`), never
    from the parsed-file cache. `subscribers=False`: a process that reads its subscribers from
    the database (a worker) skips validating the file's, when the parsed-file cache has them
    checked already (`Config.subscribers_read` then says False)."""
    file = config_path(path)
    shown = str(path or file)
    try:
        text = read_regular(file).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "file not found (`digest init` writes a commented "
                                   "example to start from; or pass -c PATH / set $DIGEST_CONFIG)")]) from None
    except (NotAFile, TooLarge) as exc:
        raise ConfigError([Problem(shown, None, "", f"cannot read it: {exc}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, None, "", f"cannot read the file: {exc}")]) from None
    return parse_config(text, file, shown=shown, cache=not locate, subscribers=subscribers)


# A file this large is parsed once per change, not by every process and reload: ruamel.yaml
# takes ~1.3 s per 1,000 subscribers, JSON ~10 ms. The cache (0600: it holds every address)
# sits beside the file, keyed by the text's hash; only a file without problems is cached.
CACHE_FROM = 100_000  # bytes of YAML


def _cache_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.parsed.json")


def _cached(text: str, path: Path) -> Any:
    try:
        data = json.loads(_cache_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256") != hashlib.sha256(text.encode("utf-8")).hexdigest():
        return None
    return data.get("document")


def _write_cache(text: str, path: Path, raw: Any) -> None:
    document = json.loads(json.dumps(raw, default=str))
    if document != raw:  # something only YAML has (a date, say): not cached, read as YAML each time
        return
    target = _cache_file(path)
    partial = target.with_name(f"{target.name}.{os.getpid()}")
    try:
        fd = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "document": document}, out)
        partial.replace(target)
    except OSError:  # a read-only folder: no cache, nothing else changes
        partial.unlink(missing_ok=True)


def parse_config(text: str, path: Path, *, shown: str | None = None, cache: bool = False,
                 subscribers: bool = True) -> Config:
    shown = shown or str(path)
    if cache and len(text) >= CACHE_FROM:
        document = _cached(text, path)
        if isinstance(document, dict):
            try:  # only a file without problems is cached: its subscribers were valid when written
                from_cache = Config.model_validate(
                    document if subscribers else {k: v for k, v in document.items() if k != "subscribers"})
            except ValidationError:
                pass  # read the YAML again below, to say where each problem is
            else:
                if not _cross_checks(document, shown):
                    from_cache._path = path
                    from_cache._subscribers_read = subscribers or "subscribers" not in document
                    from_cache._source_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
                    return from_cache
    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        hint = (" (check the indentation on this line and the one before: each level two more spaces, "
                "list items starting with '- ', no tabs)") if "\t" in text or any(
            words in detail for words in ("indentation", "block end", "block mapping", "block collection",
                                          "mapping values are not allowed", "simple key")) else ""
        raise ConfigError([Problem(shown, line, "", f"invalid YAML: {detail}{hint}")]) from None
    except Exception as exc:  # noqa: BLE001 - any other YAML error is still the user's file
        raise ConfigError([Problem(shown, None, "", f"invalid YAML: {exc}")]) from None
    if raw is None:
        raise ConfigError([Problem(shown, None, "", "the file is empty; start from the example subscribers.yaml")])
    if not isinstance(raw, dict):
        raise ConfigError([Problem(shown, 1, "", "expected a mapping of sections (sender, smtp, sources, subscribers…)")])

    problems = _cross_checks(raw, shown)
    try:
        config = Config.model_validate(raw)
        config._path = path
        config._raw = raw
        config._source_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    except ValidationError as exc:
        problems += [_locate(err, raw, shown) for err in exc.errors()]
        config = None
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems)
    assert config is not None
    if cache and len(text) >= CACHE_FROM:
        _write_cache(text, path, raw)
    return config


def _cross_checks(raw: Any, shown: str) -> list[Problem]:
    """Rules across list items, which pydantic cannot locate: duplicates."""
    problems: list[Problem] = []

    def duplicates(section: str, key: str, fold: bool, what: str) -> None:
        items = raw.get(section)
        if not isinstance(items, list):
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get(key), str):
                continue
            value = item[key].strip().lower() if fold else item[key]
            if value in seen:
                problems.append(Problem(
                    shown, _line(raw, (section, index, key)), f"{section}[{index}].{key}",
                    f"duplicate {what} {item[key]!r} (also {section}[{seen[value]}]); each must appear once"))
            else:
                seen[value] = index

    duplicates("subscribers", "email", True, "subscriber")
    duplicates("sources", "name", False, "source name")

    # A subscriber with nothing to match would never get a digest.
    defaults = raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}
    for index, item in enumerate(raw.get("subscribers") or []):
        if not isinstance(item, dict) or item.get("topics"):
            continue
        trending = item.get("trending", defaults.get("trending"))
        if not (isinstance(trending, int) and trending > 0):
            key = (("subscribers", index, "topics") if "topics" in item else ("subscribers", index))
            problems.append(Problem(
                shown, _line(raw, key), _dotted(key),
                "no topics: add at least one topic (a name and keywords), or `trending: N` for the "
                "trending list alone; otherwise this subscriber never gets a digest"))

    smtp = raw.get("smtp")
    if isinstance(smtp, dict) and smtp.get("username") and not smtp.get("password_env"):
        problems.append(Problem(
            shown, _line(raw, ("smtp", "username")), "smtp.username",
            "a username needs a password: add `password_env: DIGEST_SMTP_PASSWORD` (the name of the "
            "environment variable that holds it), or remove `username` for a server without login"))
    return problems


_MESSAGES = {
    "missing": "required key is missing",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _locate(error: Any, raw: Any, shown: str) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    # A discriminated union puts the tag in the path (sources.0.arxiv.categories): drop it.
    loc = tuple(part for i, part in enumerate(loc)
                if not (i > 0 and loc[i - 1] != "type" and part in SOURCE_TYPES and isinstance(loc[i - 1], int)))
    path = _dotted(loc)
    message = _MESSAGES.get(kind, error["msg"])
    if kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
    if kind == "extra_forbidden":
        key = loc[-1]
        parent = _node(raw, loc[:-1])
        message = f"unknown key {key!r}" + _suggest(str(key), _allowed_keys(loc[:-1], parent))
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        given = (error.get("ctx") or {}).get("tag")
        if kind == "union_tag_not_found":
            message = f"missing 'type' (one of {', '.join(SOURCE_TYPES)})"
        else:
            message = f"unknown source type {given!r}; expected one of {', '.join(SOURCE_TYPES)}" + _suggest(
                str(given), SOURCE_TYPES)
        loc = (*loc, "type")
        path = _dotted(loc)
    elif kind == "literal_error":
        message = f"expected one of {error['ctx']['expected']}, not {error['input']!r}"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than", "too_short",
                  "string_pattern_mismatch", "string_too_short"):
        message = error["msg"].replace("Input should", "should").replace("String should", "should")
        if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
            message = "should be letters, digits, '-', '_' or '.' (it names the source in commands)"
    return Problem(shown, _line(raw, loc), path, message)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node(raw: Any, loc: tuple[Any, ...]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _line(raw: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node of `loc` that exists in the YAML document."""
    node, line = raw, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    if line is None and isinstance(raw, CommentedMap):
        line = 1
    return line


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "sender": Sender, "smtp": Smtp, "defaults": Defaults, "subscribers": Subscriber,
    "topics": Topic, "presets": Topic, "signups": SignUps, "backups": Backups, "workers": Workers,
}
_SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "arxiv": ArxivSource, "arxiv-api": ArxivApiSource, "huggingface": HuggingFaceSource, "feed": FeedSource,
}


def _allowed_keys(parent_loc: tuple[Any, ...], parent: Any) -> list[str]:
    names = [p for p in parent_loc if isinstance(p, str)]
    model: type[BaseModel] | None = Config
    if names:
        if names[-1] == "sources" and isinstance(parent, dict):
            model = _SOURCE_MODELS.get(str(parent.get("type")))
        else:
            model = _SECTION_MODELS.get(names[-1])
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _zone_of_city(name: str) -> str:
    """"; did you mean 'Europe/Paris'?" for "Paris" or "new york": a zone's city, written alone."""
    wanted = name.strip().replace(" ", "_").casefold()
    found = sorted(z for z in _zone_names() if "/" in z and z.rsplit("/", 1)[1].casefold() == wanted
                   and not z.startswith(("posix/", "right/")))
    return f"; did you mean {found[0]!r}?" if found else ""


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
