"""The sign-up and settings form, both ways: the fields a person filled in into a Subscriber
(validated by the same model as subscribers.yaml, with the same limits), with every problem
located at its field in words a person reads; and a Subscriber back into the form's values.

Fields: email, name, preset (one per picked catalogue entry), topic_name_N,
topic_description_N, topic_keywords_N (separated by commas, semicolons or lines),
topic_query_N (optional, the query language), topic_sensitivity_N (-2 fewer papers, 0, 2 more),
topic_examples_N (arXiv ids or links, one a line or separated by commas; the manage page shows
it), schedule_kind (daily, weekdays, weekly),
schedule_day, schedule_time (HH:MM), timezone, max_papers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..config import MAX_TOPICS, Config, Subscriber, Topic

OWN_TOPIC_ROWS = 3  # blank rows for topics of one's own (no script needed to add one)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SPLIT = re.compile(r"[,;\n]")
# Numbers as a form may send them: ASCII digits, a few of them ("²".isdigit() is true, and
# int() of 5,000 digits raises): anything else is the field's own message, never a 500
_ROW_FIELD = re.compile(r"topic_\w+?_([0-9]{1,4})", re.ASCII)
_SENSITIVITY = re.compile(r"-?[0-9]{1,2}")
_COUNT = re.compile(r"[0-9]{1,6}")
_PLAIN = {  # the model's bounds as a person reads them, not "Input should be greater than or equal to 1"
    "greater_than_equal": "at least {ge}", "less_than_equal": "at most {le}", "greater_than": "more than {gt}",
    "less_than": "less than {lt}", "string_too_long": "at most {max_length} characters",
    "string_too_short": "at least {min_length} characters", "too_long": "at most {max_length} of them"}
_EXAMPLES_SPLIT = re.compile(r"[,;\s]+")  # ids and links hold none of these
_TOPIC_FIELDS = ("name", "description", "keywords", "query", "examples")


@dataclass
class Filled:
    """A form as filled in: its values (to show again), and the Subscriber or the problems."""

    values: dict[str, Any]
    subscriber: Subscriber | None = None
    errors: dict[str, str] = field(default_factory=dict)  # field name → message
    renamed: dict[str, str] = field(default_factory=dict)  # a topic's old name → its new one (`renames`)

    @property
    def problems(self) -> list[str]:
        return list(self.errors.values())


def blank(config: Config, email: str = "") -> dict[str, Any]:
    """The values of an empty form: the configuration's defaults."""
    kind, day, time = _schedule_parts(config.defaults.schedule)
    return {"email": email, "name": "", "preset": [], "topics": [_blank_topic() for _ in range(OWN_TOPIC_ROWS)],
            "schedule_kind": kind, "schedule_day": day, "schedule_time": time,
            "timezone": config.defaults.timezone, "max_papers": str(config.defaults.max_papers)}


def values_of(config: Config, subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber's settings as the form's values (for the manage page)."""
    kind, day, time = _schedule_parts(subscriber.schedule or config.defaults.schedule)
    own = [{"name": t.name, "description": t.description or "", "keywords": ", ".join(t.keywords),
            "query": t.query or "", "examples": "\n".join(t.examples), "sensitivity": str(t.sensitivity),
            "unshown": unshown(_unshown_of(t))}
           for t in _own(subscriber)]
    return {"email": subscriber.email, "name": subscriber.name or "",
            "preset": [t.preset for t in subscriber.topics if t.preset is not None],
            "topics": own + [_blank_topic() for _ in range(max(1, OWN_TOPIC_ROWS - len(own)))],
            "schedule_kind": kind, "schedule_day": day, "schedule_time": time,
            "timezone": subscriber.timezone or config.defaults.timezone,
            "max_papers": str(subscriber.max_papers or config.defaults.max_papers)}


def read(config: Config, form: Mapping[str, Sequence[str]], *, email: str | None = None,
         keep: Subscriber | None = None) -> Filled:
    """The form's fields (as parse_qs gives them) into a Subscriber, or every problem found.
    `email`: the address is fixed (the manage page); `keep`: settings the form does not show
    (carried over from the subscriber being edited)."""
    def one(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    rows = sorted({int(m.group(1)) for name in form if (m := _ROW_FIELD.fullmatch(name))})
    too_many = len(rows) > MAX_TOPICS  # the rows beyond are neither read nor shown again (a page of 2,700
    rows = rows[:MAX_TOPICS + 1]       # rows came back 66 times the size of the form that asked for it)
    topics_shown = [{f: one(f"topic_{f}_{n}") for f in _TOPIC_FIELDS} for n in rows]
    sensitivities = [one(f"topic_sensitivity_{n}") or "0" for n in rows]
    # What the form does not show of a topic (excludes, categories, authors, upvotes: set in a
    # file or an import) stays with it while the row keeps its name: row N is the N-th own topic
    kept = _unshown_by_row(keep, rows, topics_shown)
    values: dict[str, Any] = {
        "email": email if email is not None else one("email"), "name": one("name"),
        "preset": [p for p in form.get("preset", []) if p],
        "topics": [{**shown, "sensitivity": level, "unshown": unshown(settings)}
                   for shown, level, settings in zip(topics_shown, sensitivities, kept)]
        or [_blank_topic()],
        "schedule_kind": one("schedule_kind"), "schedule_day": one("schedule_day"),
        "schedule_time": one("schedule_time"), "timezone": one("timezone"), "max_papers": one("max_papers")}
    filled = Filled(values)
    errors = filled.errors

    catalogue = {p.name: p for p in config.presets}
    topics: list[dict[str, Any]] = []
    where: list[str] = []  # the form field prefix of each topic, to place the model's messages
    for name in values["preset"]:
        if name not in catalogue:
            errors.setdefault("preset", f"there is no preset topic {name!r} (any more): pick from the list")
            continue
        topics.append(catalogue[name].model_copy(update={"preset": name}).model_dump(exclude_defaults=True))
        where.append("preset")
    for n, shown, level, settings in zip(rows, topics_shown, sensitivities, kept):
        if not any(shown.values()):
            continue
        if not shown["name"]:
            errors[f"topic_name_{n}"] = f"Topic {n}: give it a name"
        topic: dict[str, Any] = {"name": shown["name"] or "?",
                                 "keywords": _keywords(shown["keywords"]),
                                 **settings}
        if shown["description"]:
            topic["description"] = shown["description"]
        if shown["query"]:
            topic["query"] = shown["query"]
        if shown["examples"]:
            topic["examples"] = [e for e in _EXAMPLES_SPLIT.split(shown["examples"]) if e]
        if level != "0":
            if _SENSITIVITY.fullmatch(level):
                topic["sensitivity"] = int(level)
            else:
                errors[f"topic_sensitivity_{n}"] = f"Topic {n}: pick fewer, the usual or more papers"
        topics.append(topic)
        where.append(f"topic_{{}}_{n}")
    if not topics:
        errors["topics"] = "Pick at least one topic, or describe one of your own"
    elif len(topics) > MAX_TOPICS or too_many:
        errors["topics"] = f"{f'more than {MAX_TOPICS}' if too_many else len(topics)} topics: at most {MAX_TOPICS}"

    data: dict[str, Any] = {**(keep.model_dump(exclude_defaults=True) if keep else {}),
                            "email": values["email"], "topics": topics}
    data.pop("name", None)
    if values["name"]:
        data["name"] = values["name"]
    schedule = _schedule(values, errors)
    if schedule:
        data["schedule"] = schedule
    if values["timezone"]:
        data["timezone"] = values["timezone"]
    if values["max_papers"]:
        if _COUNT.fullmatch(values["max_papers"]):
            data["max_papers"] = int(values["max_papers"])
        else:
            errors["max_papers"] = "Papers at most: a whole number, such as 10"
    try:
        subscriber = Subscriber.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            name, message = _located(error, where)
            if name not in errors:
                errors[name] = message
    else:
        if not errors:
            filled.subscriber = subscriber
            filled.renamed = renames(_own(keep) if keep is not None else [], rows, topics_shown)
    return filled


def renames(own: list[Topic], rows: list[int], shown: list[dict[str, str]]) -> dict[str, str]:
    """The topics renamed and nothing else: row N's name changed while its keywords,
    description and query stayed, the old name no longer used and the new one not taken
    before (its ratings then follow it; a row rewritten whole is another topic)."""
    before = {t.name for t in own}
    after = {fields["name"] for fields in shown}
    renamed = {}
    for n, fields in zip(rows, shown):
        if not 0 < n <= len(own) or not fields["name"] or fields["name"] == own[n - 1].name:
            continue
        old = own[n - 1]
        same = (_keywords(fields["keywords"]) == old.keywords
                and fields["description"] == (old.description or "") and fields["query"] == (old.query or ""))
        if same and old.name not in after and fields["name"] not in before:
            renamed[old.name] = fields["name"]
    return renamed


def _keywords(field: str) -> list[str]:
    """The keywords typed in a topic's field, as the topic keeps them."""
    return [k.strip() for k in _SPLIT.split(field) if k.strip()]


def _located(error: Any, where: list[str]) -> tuple[str, str]:
    """(form field, a person's message) for one of the model's errors."""
    loc = [part for part in error["loc"] if not (isinstance(part, str) and "[" in part)]
    message = _PLAIN[error["type"]].format(**error["ctx"]) if error.get("type") in _PLAIN and error.get("ctx") \
        else str(error.get("msg", "")).removeprefix("Value error, ")
    head = loc[0] if loc else ""
    labels = {"email": "E-mail", "name": "Name", "schedule": "Schedule", "timezone": "Time zone",
              "max_papers": "Papers at most"}
    if head in labels:
        field_name = {"schedule": "schedule_time"}.get(str(head), str(head))
        return field_name, f"{labels[str(head)]}: {message}"
    if head == "topics" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(where):
        prefix = where[loc[1]]
        part = str(loc[2]) if len(loc) > 2 else "keywords"
        if prefix == "preset":
            return "preset", f"Preset topic: {message}"
        number = prefix.rsplit("_", 1)[1]
        part = part if part in _TOPIC_FIELDS else "keywords"
        return prefix.format(part), f"Topic {number}, {part}: {message}"
    if head == "topics":
        return "topics", f"Topics: {message}"
    return "form", message


def _schedule(values: dict[str, Any], errors: dict[str, str]) -> str | None:
    kind, day, time = values["schedule_kind"], values["schedule_day"], values["schedule_time"]
    if not kind and not time:
        return None
    if kind not in ("daily", "weekdays", "weekly"):
        errors["schedule_kind"] = "Schedule: pick daily, weekdays or weekly"
        return None
    found = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", time)  # ASCII: "٠٧:٣٠" is not stored as a schedule
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        errors["schedule_time"] = "Schedule: a time of day such as 07:30"
        return None
    if kind == "weekly":
        if day not in DAYS:
            errors["schedule_day"] = "Schedule: pick the day of the week"
            return None
        return f"weekly {day} {time}"
    return f"{kind} {time}"


def _schedule_parts(schedule: str) -> tuple[str, str, str]:
    parts = schedule.split()
    if parts[0] == "weekly":
        return "weekly", parts[1][:3], parts[2]
    return parts[0], "mon", parts[1]


def _blank_topic() -> dict[str, str]:
    return {**dict.fromkeys(_TOPIC_FIELDS, ""), "sensitivity": "0", "unshown": ""}


_UNSHOWN = ("exclude", "categories", "authors", "min_upvotes")  # a topic's settings the form has no field for


def _unshown_by_row(keep: Subscriber | None, rows: list[int], shown: list[dict[str, str]]) -> list[dict[str, Any]]:
    """For each row of the form, the unshown settings of the topic it shows: the kept
    subscriber's own topic of that place, when the row still has its name."""
    own = _own(keep) if keep is not None else []
    return [_unshown_of(own[n - 1]) if 0 < n <= len(own) and own[n - 1].name == fields["name"] else {}
            for n, fields in zip(rows, shown)]


def _own(subscriber: Subscriber) -> list[Topic]:
    """Their topics of their own (not picked from the presets), as the form's rows list them."""
    return [t for t in subscriber.topics if t.preset is None]


def _unshown_of(topic: Topic) -> dict[str, Any]:
    """The settings of `topic` the form has no field for, those it has."""
    return {key: value for key in _UNSHOWN if (value := getattr(topic, key)) not in (None, [])}


def unshown(settings: Mapping[str, Any]) -> str:
    """A topic's settings that the form has no field for, in words ("" when none)."""
    parts = []
    if settings.get("exclude"):
        parts.append("not when it says " + ", ".join(settings["exclude"]))
    if settings.get("categories"):
        parts.append("in " + ", ".join(settings["categories"]))
    if settings.get("authors"):
        parts.append("by " + ", ".join(settings["authors"]))
    if settings.get("min_upvotes") is not None:
        parts.append(f"at least {settings['min_upvotes']} upvotes")
    return "; ".join(parts)
