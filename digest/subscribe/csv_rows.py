"""Subscribers as CSV rows: what `digest subscribers import` reads and `export` writes.

    email,name,topics,schedule,timezone,max_papers,trending
    ada@example.org,Ada,KV cache; Reasoning: chain of thought, test-time scaling,daily 07:30,Europe/London,20,3

`email` is required; every other column is optional, and an empty cell means the default
(`max_per_topic`, `lookback`, `send_empty`, `enabled` and `paused_until` as subscribers.yaml
writes them: 2, 2d, true, false, 2026-12-24).
Columns are separated by commas, or by semicolons or tabs as some spreadsheets save them.
`topics`: topics separated by `;`, each a keyword or phrase (a topic of its own, named after
it) or `Name: keyword, keyword` (a named topic of several keywords). Every row is validated
by the same model as subscribers.yaml's, with the same limits; every bad row is reported with
its line before anything is changed.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from ..config import Subscriber, Topic, _locate
from ..errors import ConfigError, Problem

COLUMNS = ("email", "name", "topics", "schedule", "timezone", "max_papers", "trending",
           "max_per_topic", "lookback", "send_empty", "enabled", "paused_until")
_NUMBERS = ("max_papers", "trending")
# The rest of a subscriber's settings, as subscribers.yaml writes them (2 ; 2d ; true ; false ;
# 2026-12-24): an export keeps them, so a paused subscriber comes back paused
MORE = ("max_per_topic", "lookback", "send_empty", "enabled", "paused_until")


def parse_topics(cell: str) -> list[dict]:
    """`KV cache; Reasoning: chain of thought, test-time scaling` as topics (see the module);
    a cell that starts with `[` is the topics as JSON (what `export` writes for topics with
    more than keywords: a description, a query, excludes, categories...)."""
    if cell.lstrip().startswith("["):
        try:
            topics = json.loads(cell)
        except ValueError as exc:
            raise ValueError(f"topics as JSON: {exc}") from None
        return topics if isinstance(topics, list) else [topics]
    topics = []
    for item in (part.strip() for part in cell.split(";")):
        if not item:
            continue
        name, colon, keywords = item.partition(":")
        if colon and name.strip():
            topics.append({"name": name.strip(), "keywords": [k.strip() for k in keywords.split(",") if k.strip()]})
        else:
            topics.append({"name": item, "keywords": [item]})
    return topics


def topics_cell(topics: Iterable[Topic]) -> str:
    """The `topics` cell that `parse_topics` reads back as these topics: the short form when
    every topic is keywords alone, else JSON."""
    topics = list(topics)
    items = []
    for topic in topics:
        # Anything but a name and keywords (a description, a sensitivity, the preset it came
        # from, a query...) is only kept by JSON: the short form would drop it without a word
        plain = topic.model_dump(exclude_defaults=True).keys() <= {"name", "keywords"} and bool(topic.keywords)
        separators = any(c in text for text in (topic.name, *topic.keywords) for c in ";,:[")
        if not plain or separators:
            return json.dumps([t.model_dump(mode="json", exclude_defaults=True) for t in topics], ensure_ascii=False)
        items.append(topic.keywords[0] if topic.keywords == [topic.name] else f"{topic.name}: {', '.join(topic.keywords)}")
    return "; ".join(items)


def read_subscribers(text: str, shown: str) -> tuple[list[tuple[int, Subscriber]], int]:
    """Every row as a Subscriber with its line, and how many rows were skipped as another
    subscribers.yaml's (an export's rows of origin `config`: copy that file instead); raises
    ConfigError listing every bad row."""
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    problems = _header_problems(header, shown)
    if problems:
        raise ConfigError(problems)
    reader.fieldnames = header
    found: list[tuple[int, Subscriber]] = []
    first_line: dict[str, int] = {}
    skipped = 0
    start = 2
    for row in reader:
        line, start = start, reader.line_num + 1  # a quoted cell may span lines: a row starts after the last
        cells = {k: from_text((v or "").strip()) for k, v in row.items() if k is not None}
        if row.get(None):  # type: ignore[call-overload]
            problems.append(Problem(shown, line, "", f"{len(header) + len(row[None])} cells, but the header "  # type: ignore[index]
                                    f"has {len(header)} columns (a comma inside a cell needs quotes)"))
            continue
        if not any(cells.values()):
            continue
        if cells.get("origin") == "config":
            skipped += 1
            continue
        key = cells.get("email", "").lower()
        if key and key in first_line:
            problems.append(Problem(shown, line, "email", f"{cells['email']} is already on line {first_line[key]}"))
            continue
        first_line[key] = line
        try:
            found.append((line, validated(_settings(cells), shown, line)))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return found, skipped


def _delimiter(text: str) -> str:
    """The column separator, from the header line: a comma, or what spreadsheets in many
    locales write instead (a semicolon), or a tab."""
    header = text.split("\n", 1)[0]
    if "," not in header:
        for other in (";", "\t"):
            if other in header:
                return other
    return ","


def validated(settings: dict[str, Any], shown: str, line: int | None = None) -> Subscriber:
    """A subscriber's settings checked by the model subscribers.yaml's are; a ConfigError
    locating every problem (`shown`, and `line` for a file's row)."""
    try:
        return Subscriber.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError([_row_problem(error, shown, line) for error in exc.errors()]) from None


# A cell that starts with one of these is a formula to a spreadsheet: a name typed on the public
# sign-up page as =HYPERLINK("https://…") would run in the admin's (OWASP "CSV injection").
# The export writes such a cell after a ' (shown as text, not run) and the import takes it off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_text(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def from_text(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def write_subscribers(rows: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*COLUMNS, "origin", "state"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: as_text(cell) for name, cell in row.items()} for row in rows)
    return out.getvalue()


def _header_problems(header: list[str], shown: str) -> list[Problem]:
    if "email" not in header:
        return [Problem(shown, 1, "", f"no 'email' column (the first line names the columns: {', '.join(COLUMNS)})")]
    problems = []
    for name in header:
        if name not in COLUMNS and name not in ("origin", "state"):  # an export's own columns read back
            close = difflib.get_close_matches(name, COLUMNS, n=1)
            problems.append(Problem(shown, 1, "", f"unknown column {name!r}"
                                    + (f"; did you mean {close[0]!r}?" if close else f" (columns: {', '.join(COLUMNS)})")))
    return problems


def _settings(cells: dict[str, str]) -> dict:
    settings: dict = {"email": cells.get("email", "")}
    for name in ("name", "schedule", "timezone"):
        if cells.get(name):
            settings[name] = cells[name]
    for name in (*_NUMBERS, *MORE):
        if cells.get(name):
            settings[name] = cells[name]  # the model says what is wrong with "ten"
    if cells.get("topics"):
        try:
            settings["topics"] = parse_topics(cells["topics"])
        except ValueError as exc:
            settings["topics"] = str(exc)  # the model reports it on the row's line
    return settings


def _row_problem(error: Any, shown: str, line: int | None) -> Problem:
    problem = _locate(error, {}, shown)
    path = problem.path
    if path.startswith("topics"):  # topics[1].keywords: say which of the cell's topics
        number = error["loc"][1] + 1 if len(error["loc"]) > 1 and isinstance(error["loc"][1], int) else None
        path = f"topics (topic {number})" if number else "topics"
    return Problem(shown, line, path, problem.message)
