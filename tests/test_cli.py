"""The command as a user runs it: a real process, its output and exit code, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATABASE, REALWORLD, fresh_database, write_config

pytestmark = [pytest.mark.clock, pytest.mark.database]  # under faketime at other dates; on PostgreSQL (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
ARXIV_FILES = ["arxiv-rss-cs.AI-2026-04-27.xml", "arxiv-rss-cs.CL-2026-04-27.xml",
               "arxiv-rss-cs.LG-2026-04-27.xml", "arxiv-atom-2025-08-20.xml"]


def digest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "digest", *args], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def realworld_sources() -> list[dict]:
    sources = [{"name": f"arxiv-{i}", "type": "arxiv", "categories": ["cs.AI"], "url": str(REALWORLD / f)}
               for i, f in enumerate(ARXIV_FILES)]
    return sources + [
        {"name": "api-100", "type": "arxiv-api", "query": "all:testing", "url": str(REALWORLD / "arxiv-api-query-testing-100.xml")},
        {"name": "api-5", "type": "arxiv-api", "query": "all:transformer", "url": str(REALWORLD / "arxiv-api-query-transformer.xml")},
        {"name": "hf", "type": "huggingface", "url": str(REALWORLD / "hf-daily-papers-2026-06-12.json")},
        {"name": "blog", "type": "feed", "url": str(REALWORLD / "hf-blog-rss.xml")},
    ]


def test_fetch_realworld_then_nothing_new(tmp_path):
    config = write_config(tmp_path, realworld_sources(), state=fresh_database(tmp_path))
    assert digest("-c", str(config), "validate").returncode == 0
    first = digest("-c", str(config), "fetch")
    assert first.returncode == 0, first.stderr
    assert "154 new papers from 8 of 8 sources" in first.stdout
    assert "stale listing" in first.stderr and "`warn_stale: false`" in first.stderr  # the captures are months old
    second = digest("-c", str(config), "fetch")
    assert second.returncode == 0 and "0 new papers from 8 of 8 sources" in second.stdout
    listed = json.loads(digest("-c", str(config), "papers", "--format", "json").stdout)
    assert len(listed) == 154 and len({p["id"] for p in listed}) == 154
    for paper in listed:
        assert set(paper) >= {"id", "title", "authors", "abstract", "categories", "url", "published",
                              "first_seen_at", "sources", "upvotes"}
    by_id = {p["id"]: p for p in listed}
    assert by_id["2508.13429"]["authors"] == ["Paulo André Lima de Castro"]
    assert by_id["2606.13681"]["upvotes"] == 118 and by_id["2606.13681"]["sources"] == ["hf"]
    assert by_id["2604.22002"]["upvotes"] is None


def test_fetch_one_source_by_name_and_filters(tmp_path):
    config = write_config(tmp_path, realworld_sources(), state=fresh_database(tmp_path))
    result = digest("-c", str(config), "fetch", "hf")
    assert result.returncode == 0 and "30 new papers from 1 of 1 sources" in result.stdout
    only_hf = json.loads(digest("-c", str(config), "papers", "--source", "hf", "--since", "1d",
                                "--format", "json").stdout)
    assert len(only_hf) == 30
    table = digest("-c", str(config), "papers", "--limit", "3")
    assert table.returncode == 0 and "3 papers" in table.stdout


@pytest.mark.undated
def test_unknown_source_name(tmp_path):
    config = write_config(tmp_path, realworld_sources(), state=fresh_database(tmp_path))
    result = digest("-c", str(config), "fetch", "hff")
    assert result.returncode == 2  # a wrong argument: the user's to fix
    assert "unknown source 'hff'" in result.stderr and "arxiv-0" in result.stderr


@pytest.mark.undated
def test_broken_sources_reported_others_stored(tmp_path, feed_server):
    (tmp_path / "bad.xml").write_text("<rss><channel><item><title>unclosed", encoding="utf-8")
    sources = realworld_sources()[-2:] + [
        {"name": "malformed", "type": "feed", "url": "bad.xml"},
        {"name": "gone", "type": "feed", "url": feed_server.url("/gone")},
    ]
    result = digest("-c", str(write_config(tmp_path, sources, state=fresh_database(tmp_path))), "fetch")
    assert result.returncode == 0
    assert "error: malformed: not a valid RSS or Atom document" in result.stderr
    assert "error: gone: HTTP 404" in result.stderr
    assert "33 new papers from 2 of 4 sources" in result.stdout


@pytest.mark.undated
def test_exit_1_when_every_source_failed(tmp_path):
    result = digest("-c", str(write_config(tmp_path, [{"name": "x", "type": "feed", "url": "none.xml"}], state=fresh_database(tmp_path))), "fetch")
    assert result.returncode == 1 and "file not found" in result.stderr
    assert "no source could be reached" not in result.stderr  # a file, not the network


@pytest.mark.undated
def test_every_source_unreachable_says_what_works_offline(tmp_path):
    ports = []
    for _ in range(2):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            ports.append(closed.getsockname()[1])
    sources = [{"name": f"s{n}", "type": "feed", "url": f"http://127.0.0.1:{port}/feed.xml"} for n, port in enumerate(ports)]
    result = digest("-c", str(write_config(tmp_path, sources, state=fresh_database(tmp_path))), "fetch")
    assert result.returncode == 1 and "2 of 2 sources failed" in result.stderr
    assert "no source could be reached" in result.stderr and "`digest demo`" in result.stderr and "https_proxy" in result.stderr


@pytest.mark.no_postgresql
@pytest.mark.undated
def test_config_mistakes_exit_2_with_every_problem(tmp_path):
    path = tmp_path / "subscribers.yaml"
    path.write_text('sender:\n  from: "x@example.org"\nsubscribers:\n  - email: nope\n    timezone: Mars/Base\n'
                    "sources:\n  - {name: a, type: arxiv, categories: [cs.AI], annouce_types: [new]}\n")
    result = digest("validate", cwd=tmp_path)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert lines == [
        "error: subscribers.yaml:4 subscribers[0]: no topics: add at least one topic (a name and keywords), "
        "or `trending: N` for the trending list alone; otherwise this subscriber never gets a digest",
        "error: subscribers.yaml:4 subscribers[0].email: invalid e-mail address 'nope': "
        "An email address must have an @-sign.",
        "error: subscribers.yaml:5 subscribers[0].timezone: unknown time zone 'Mars/Base' "
        "(use an IANA name such as Europe/Berlin or UTC)",
        "error: subscribers.yaml:7 sources[0].annouce_types: unknown key 'annouce_types'; "
        "did you mean 'announce_types'?",
    ]


@pytest.mark.undated
def test_missing_config_and_bad_arguments(tmp_path):
    result = digest("fetch", cwd=tmp_path)
    assert result.returncode == 2 and "subscribers.yaml: file not found" in result.stderr
    config = write_config(tmp_path, realworld_sources())
    result = digest("-c", str(config), "papers", "--since", "yesterday-ish")
    assert result.returncode == 2 and "expected an age such as 12h" in result.stderr
    result = digest("-c", str(config), "send", "--to", "not an address")  # each digest would have failed
    assert result.returncode == 2 and "invalid e-mail address 'not an address'" in result.stderr
    result = digest("-c", str(config), "papers", "--limit", "-1")  # it listed all papers but the last
    assert result.returncode == 2 and "--limit" in result.stderr
    result = digest("-c", str(config), "papers", "--source", "arxiv-9")  # a typo: said, not just "0 papers"
    assert result.returncode == 0 and "no source 'arxiv-9' in the configuration (its sources: arxiv-0, " in result.stderr
    # preview says so before any work: not after asking arXiv for a topic's examples (a wait
    # for the network, and a warning first)
    from .arxiv_api import closed_port

    config = write_config(tmp_path, realworld_sources(), extra=(
        '    topics: [{name: Evaluation, description: How to evaluate LLMs., examples: ["2306.05685"]}]\n'
        f"arxiv_api: http://127.0.0.1:{closed_port()}/api/query"))
    result = digest("-c", str(config), "preview", "alice@example.org", "--since", "yesterday")
    assert result.returncode == 2 and "expected an age such as 12h" in result.stderr
    assert "examples" not in result.stderr, result.stderr


@pytest.mark.undated
@pytest.mark.skipif(DATABASE != "sqlite", reason="a SQLite file's folder")
def test_unwritable_state_is_a_clear_error(tmp_path):
    config = write_config(tmp_path, realworld_sources())
    text = config.read_text().replace("sender:", "state: sqlite:///no/such/folder/x.db\nsender:", 1)
    config.write_text(text)
    result = digest("-c", str(config), "fetch")
    assert result.returncode == 1 and "state database" in result.stderr and "state:" in result.stderr


SAMPLES = ROOT / "tests" / "data" / "samples"  # real titles, made-up ids and authors


def test_preview_json_on_the_shipped_samples(tmp_path):
    sources = [{"name": "arxiv", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
               {"name": "hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")}]
    topics = """    max_papers: 12
    max_per_topic: 5
    trending: 2
    topics:
      - name: Efficient inference
        keywords: [KV cache, speculative decoding, quantization]
        exclude: [survey]
      - name: Scaling
        query: '"scaling law" AND NOT title:chinchilla'
"""
    config = write_config(tmp_path, sources, extra=topics, state=fresh_database(tmp_path))
    assert digest("-c", str(config), "fetch").returncode == 0
    runs = [digest("-c", str(config), "preview", "ALICE@example.org", "--format", "json") for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    for d in (first, second):
        del d["generated_at"], d["since"]
    assert first == second  # the same output twice in a row, and nothing recorded in between

    assert first["subscriber"] == "alice@example.org" and first["subject"].startswith("Paper digest")
    topics_seen = [s["topic"] for s in first["sections"]]
    assert topics_seen == ["Efficient inference", "Scaling", "Trending"]
    shown = [p for s in first["sections"] for p in s["papers"]]
    assert len(shown) == 12 and len({p["id"] for p in shown}) == 12
    assert all(len(s["papers"]) <= 5 for s in first["sections"])
    for p in shown:
        assert set(p) >= {"id", "title", "url", "authors", "score", "upvotes", "why", "also_in"} and p["why"]
    assert first["omitted"] == sum(s["omitted"] for s in first["sections"]) > 0
    scaling = [p["title"] for p in first["sections"][1]["papers"]]
    assert all("scaling law" in t.lower() for t in scaling[:3]) and not any("Chinchilla" in t for t in scaling)

    text = digest("-c", str(config), "preview", "alice@example.org", "--since", "1h")
    assert text.returncode == 0 and "## Efficient inference" in text.stdout
    nobody = digest("-c", str(config), "preview", "alise@example.org")
    assert nobody.returncode == 2 and "did you mean 'alice@example.org'" in nobody.stderr  # the user's to fix


@pytest.mark.undated
def test_validate_reports_query_syntax_errors_with_positions(tmp_path):
    topics = """    topics:
      - name: Inference
        query: '"KV cache" AND (quantiz* OR'
      - name: Quotes
        query: 'title:"open'
"""
    config = write_config(tmp_path, [{"name": "hf", "type": "huggingface"}], extra=topics)
    result = digest("-c", str(config), "validate")
    assert result.returncode == 2
    assert "subscribers.yaml:9 subscribers[0].topics[0].query: expected a term at position 28" in result.stderr
    assert "subscribers.yaml:11 subscribers[0].topics[1].query: unclosed quote \" at position 7" in result.stderr
