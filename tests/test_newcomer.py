"""The newcomer's first hour (issue #9's list), each defect tried again as a user would: a real
process, real files, real servers on loopback."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest

from digest.config import Config, Sender, Subscriber, Topic, load_config
from digest.gather import gather
from digest.gather.text import title_text
from digest.models import Digest, DigestEntry, Paper, Section
from digest.render.compose import Composer
from digest.render.highlight import spans
from digest.render.links import email_from_token, unsubscribe_token
from digest.store import Ledger, Store
from digest.web.unsubscribe import unsubscribe_server

from .conftest import REALWORLD, FeedServer, Reply, fresh_database, write_config
from .smtp_server import SmtpServer
from .test_cli import SAMPLES, digest
from .test_deliver import fetched_db, setup  # noqa: F401 - the fixture
from .test_unsubscribe import request

pytestmark = pytest.mark.database  # on PostgreSQL too (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
TOPICS = "    topics: [{name: LLMs, keywords: [LLM]}]\n"


# ---------------------------------------------------------------- 1. validate sees what fails later


@pytest.mark.no_postgresql
def test_validate_reports_what_would_fail_later(tmp_path):
    (tmp_path / "my-templates").mkdir()
    (tmp_path / "my-templates" / "_paper.html.j2").write_text("<div>{{ paper.title }</div>\n")  # broken
    config = tmp_path / "subscribers.yaml"
    config.write_text(
        'sender: {from: "D <d@example.org>"}\n'
        "smtp:\n  host: 127.0.0.1\n  username: digest\n  password_env: DIGEST_NEWCOMER_PW\n"
        "templates: my-templates\n"
        "sources:\n  - {name: gone, type: feed, url: no-such-feed.xml}\n"
        "subscribers:\n"
        "  - email: a@example.org\n    topics: []\n"
        "  - email: b@example.org\n"
        "  - email: c@example.org\n    trending: 5\n"  # the trending list alone is a valid digest
        "  - email: d@example.org\n" + TOPICS)
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_NEWCOMER_PW"}
    result = subprocess.run([sys.executable, "-m", "digest", "validate", "-c", str(config)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(l.startswith("error: ") and "subscribers.yaml:11 subscribers[0].topics: no topics" in l for l in lines)
    assert any("subscribers.yaml:12 subscribers[1]: no topics" in l for l in lines)
    assert not any("subscribers[2]" in l for l in lines)
    # the file is fixed; what remains is this environment and the template
    config.write_text(config.read_text().replace("    topics: []\n", TOPICS).replace(
        "  - email: b@example.org\n", "  - email: b@example.org\n" + TOPICS))
    result = subprocess.run([sys.executable, "-m", "digest", "validate", "-c", str(config)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    warnings = [l for l in result.stderr.splitlines() if l.startswith("warning:")]
    assert any("subscribers.yaml:5 smtp.password_env" in l and "$DIGEST_NEWCOMER_PW is not set" in l for l in errors)
    assert any("subscribers.yaml:6 templates" in l and "_paper.html.j2:1" in l for l in errors)
    assert any("subscribers.yaml:8 sources[0].url" in l and "no-such-feed.xml" in l for l in warnings)
    # with the password set and the template fixed, only the warning stays: exit 0
    (tmp_path / "my-templates" / "_paper.html.j2").unlink()
    result = subprocess.run([sys.executable, "-m", "digest", "validate", "-c", str(config)],
                            capture_output=True, text=True, env={**env, "DIGEST_NEWCOMER_PW": "x"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "1 warning" in result.stdout and "no-such-feed.xml" in result.stderr


@pytest.mark.parametrize("state, said", [
    ("sqlite:///nodir/digest.db", "the folder of the state database, {tmp}/nodir, does not exist"),
    ("sqlite:///notes.txt", "{tmp}/notes.txt is not a SQLite database"),
    ("sqlite:///sub", "{tmp}/sub is a folder"),
    ("postgresql://digest@127.0.0.1:{port}/digest", "cannot reach the state database postgresql://digest@127.0.0.1:{port}"),
], ids=["no folder", "another file", "a folder", "no server"])
def test_validate_says_when_the_state_database_cannot_be_opened_here(tmp_path, state, said):
    """It said OK, and the next command failed on it."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "notes.txt").write_text("important\n")
    (tmp_path / "sub").mkdir()
    config = write_config(tmp_path, [], extra=TOPICS, state=state.format(port=port))
    result = digest("-c", str(config), "validate")
    assert result.returncode == 2 and said.format(tmp=tmp_path, port=port) in result.stderr, result.stderr
    assert "state:" in result.stderr or ":3 state" in result.stderr or " state: " in result.stderr
    assert not (tmp_path / "nodir").exists() and (tmp_path / "notes.txt").read_text() == "important\n"


def test_username_without_password_env_is_a_config_error(tmp_path):
    config = write_config(tmp_path, [], extra=TOPICS)
    config.write_text(config.read_text().replace("sender:", "smtp: {username: digest}\nsender:", 1))
    result = digest("-c", str(config), "validate")
    assert result.returncode == 2 and "smtp.username: a username needs a password" in result.stderr


# ---------------------------------------------------------------- 2. categories for Hugging Face papers


def arxiv_api_answer(ids: list[str], categories: dict[str, list[str]]) -> bytes:
    entries = "".join(
        f"<entry><id>http://arxiv.org/abs/{i}v1</id><title>Paper {i}</title><summary>About {i}.</summary>"
        f"<author><name>A. Author</name></author><published>2026-06-11T00:00:00Z</published>"
        f'<arxiv:primary_category term="{categories[i][0]}"/>'
        + "".join(f'<category term="{c}"/>' for c in categories[i]) + "</entry>"
        for i in ids if i in categories)
    return (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
            f"<title>arXiv Query</title><updated>2026-06-12T00:00:00Z</updated>{entries}</feed>").encode()


class ArxivApi(FeedServer):
    """The arXiv API's id_list answers for the ids it knows; records each request's time."""

    def __init__(self, categories: dict[str, list[str]]) -> None:
        super().__init__()
        self.known = categories
        handler = self.httpd.RequestHandlerClass
        original = handler.do_GET
        api = self

        def do_get(request):  # noqa: ANN001
            if request.path.startswith("/api/query"):
                ids = parse_qs(urlsplit(request.path).query)["id_list"][0].split(",")
                api.routes["/api/query"] = [Reply(200, arxiv_api_answer(ids, api.known),
                                                  {"Content-Type": "application/atom+xml"})]
            return original(request)

        handler.do_GET = do_get


def hf_items(count: int) -> bytes:
    items = json.loads((REALWORLD / "hf-daily-papers-2026-06-12.json").read_bytes())
    extra = []
    for n in range(count - len(items)):  # more papers than one request holds
        item = json.loads(json.dumps(items[0]))
        item["paper"]["id"] = f"2606.{20000 + n}"
        extra.append(item)
    return json.dumps((items + extra)[:count]).encode()


def test_hugging_face_papers_get_their_arxiv_categories(tmp_path):
    hf = json.loads(hf_items(130))
    ids = [i["paper"]["id"] for i in hf]
    known = {i: ["cs.CV", "cs.LG"] if n % 2 else ["cs.CL"] for n, i in enumerate(ids) if n != 5}  # one unknown to arXiv
    server = ArxivApi(known)
    server.thread.start()
    try:
        hf_url = server.serve("/daily_papers", Reply(200, json.dumps(hf).encode(), {"Content-Type": "application/json"}))
        config_path = write_config(tmp_path, [{"name": "hf", "type": "huggingface", "url": hf_url,
                                               "categories_url": server.url("/api/query")}],
                                   extra="    topics: [{name: Vision, categories: [cs.CV]}]\n", state=fresh_database(tmp_path))
        config = load_config(config_path)
        store = Store(config.database_url())
        now = datetime.now(UTC)  # the preview below reads the real clock too
        reports = gather(config, store, now=now)
        assert reports[0].ok, reports[0].error
        asked = [(p, t) for p, _, t in server.requests if p.startswith("/api/query")]
        assert len(asked) == 2  # 130 ids: two requests of at most 100
        assert len(parse_qs(urlsplit(asked[0][0]).query)["id_list"][0].split(",")) == 100
        assert asked[1][1] - asked[0][1] >= 2.9  # arXiv's 3 s between requests
        stored = {p.id: p.categories for p in store.papers()}
        assert stored[ids[1]] == ("cs.CV", "cs.LG") and stored[ids[0]] == ("cs.CL",) and stored[ids[5]] == ()
        # the next fetch asks only for what is still unknown
        gather(config, store, now=now + timedelta(seconds=1))
        again = [p for p, _, _ in server.requests if p.startswith("/api/query")][2:]
        assert len(again) == 1 and parse_qs(urlsplit(again[0]).query)["id_list"] == [ids[5]]
        # a topic with categories now finds Hugging Face papers
        preview = digest("-c", str(config_path), "preview", "alice@example.org", "--format", "json", "--since", "30d")
        papers = [p["id"] for s in json.loads(preview.stdout)["sections"] for p in s["papers"]]
        assert papers and all(known.get(p, [""])[0] == "cs.CV" for p in papers)
        # digest papers says which are unknown
        listing = digest("-c", str(config_path), "papers")
        assert "1 with categories unknown" in listing.stdout
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_unreachable_arxiv_api_keeps_the_papers_and_says_so(tmp_path, feed_server):
    hf_url = feed_server.serve("/daily_papers", Reply(200, hf_items(30)))
    config = write_config(tmp_path, [{"name": "hf", "type": "huggingface", "url": hf_url,
                                      "categories_url": feed_server.url("/down"), "timeout": 2}], state=fresh_database(tmp_path))
    feed_server.serve("/down", Reply(503, b"down"))
    result = digest("-c", str(config), "fetch")
    assert result.returncode == 0 and "30 new papers from 1 of 1 sources" in result.stdout
    assert "categories of 30 papers unknown" in result.stderr and "asked again on the next fetch" in result.stderr
    assert "`fill_categories: false`" in result.stderr and "id_list" not in result.stderr  # not a hundred ids


# ---------------------------------------------------------------- 3. a url is enough


def test_a_url_is_enough_for_arxiv_and_arxiv_api_sources(tmp_path):
    config = write_config(tmp_path, [
        {"name": "listing", "type": "arxiv", "url": str(REALWORLD / "arxiv-rss-cs.CL-2026-04-27.xml")},
        {"name": "search", "type": "arxiv-api", "url": str(REALWORLD / "arxiv-api-query-transformer.xml")}], state=fresh_database(tmp_path))
    assert digest("-c", str(config), "validate").returncode == 0
    fetched = digest("-c", str(config), "fetch")
    assert fetched.returncode == 0 and "from 2 of 2 sources" in fetched.stdout
    bare = write_config(tmp_path, [{"name": "listing", "type": "arxiv"}, {"name": "search", "type": "arxiv-api"}])
    result = digest("-c", str(bare), "validate")
    assert result.returncode == 2
    assert "sources[0]: an arxiv source needs `categories`" in result.stderr
    assert "sources[1]: an arxiv-api source needs a `query`" in result.stderr


# ---------------------------------------------------------------- 4. branding


def compose(config: Config, digest_: Digest, subscriber: Subscriber):  # noqa: ANN201
    return Composer(config, secret="k").email(digest_, subscriber)


def one_paper_digest(**paper_fields) -> Digest:
    paper = Paper(id="2611.00001", title=paper_fields.pop("title", "A (KV) cache paper"), url="https://arxiv.org/abs/2611.00001",
                  abstract="About it.", first_seen_at=NOW, **paper_fields)
    return Digest("alice@example.org", "Alice", NOW, NOW - timedelta(days=1),
                  (Section("Scaling laws", (DigestEntry(paper, 0.9, 'matched "KV cache" in title', ("KV cache",)),)),))


@pytest.mark.no_postgresql
def test_a_long_url_in_a_summary_stays_whole_in_the_text_part():
    """Wrapped at 72 columns, a URL was cut in two (and no longer worked when clicked)."""
    url = "https://github.com/a-very-long-organisation-name/an-even-longer-repository-name-for-the-paper"
    config = Config(sender=Sender(**{"from": "Lab <papers@nlp.example.org>"}), base_url="https://digest.example.org")
    subscriber = Subscriber(email="alice@example.org", topics=[Topic(name="Scaling laws", keywords=["scaling law"])])
    mail = compose(config, one_paper_digest(ai_summary=f"Code and data are at {url} for everyone."), subscriber)
    assert any(line.strip() == url for line in mail.text.splitlines()), mail.text


@pytest.mark.no_postgresql
def test_the_list_name_shows_in_subject_heading_list_id_and_footer():
    config = Config(sender=Sender(**{"from": "Lab <papers@nlp.example.org>", "reply_to": "admin@example.org",
                                     "list_name": "NLP Lab Papers"}), base_url="https://digest.example.org")
    subscriber = Subscriber(email="alice@example.org", topics=[Topic(name="Scaling laws", keywords=["scaling law"])])
    mail = compose(config, one_paper_digest(), subscriber)
    assert mail.subject.startswith("NLP Lab Papers · Nov 22 · 1 new")
    assert mail.message["List-Id"] == "NLP Lab Papers <nlp-lab-papers.nlp.example.org>"
    doc = lxml.html.fromstring(mail.html)
    assert doc.xpath("//h1")[0].text_content() == "NLP Lab Papers"
    assert "subscribed to NLP Lab Papers for: Scaling laws." in " ".join(doc.text_content().split())
    assert "subscribed to NLP Lab Papers for: Scaling laws." in " ".join(mail.text.split())


@pytest.mark.no_postgresql
@pytest.mark.parametrize("name, label", [("Lab Papers ✨", "lab-papers"), ("Ünï, Papers", "uni-papers"),
                                         ("Lab: Café papers", "lab-cafe-papers")])
def test_a_list_name_beyond_ascii_makes_a_list_id_any_reader_parses(name, label):
    """Encoded words are never inside quotes (RFC 2047 §5): a quoted name had its quote encoded."""
    config = Config(sender=Sender(**{"from": "Lab <papers@nlp.example.org>", "list_name": name}),
                    base_url="https://digest.example.org")
    subscriber = Subscriber(email="alice@example.org", topics=[Topic(name="Scaling laws", keywords=["scaling law"])])
    mail = compose(config, one_paper_digest(), subscriber)
    raw = mail.wire.split(b"\r\n\r\n", 1)[0].decode("ascii")
    [line] = [h for h in raw.replace("\r\n ", " ").split("\r\n") if h.startswith("List-Id:")]
    assert '"' not in line and line.endswith(f" <{label}.nlp.example.org>"), line
    assert str(mail.message["List-Id"]) == f"{name} <{label}.nlp.example.org>"


# ---------------------------------------------------------------- 5. opaque tokens


@pytest.mark.no_postgresql
def test_tokens_hold_no_address_and_old_links_still_work():
    secret = "installation-key"
    token = unsubscribe_token(secret, "priya@example.org")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"priya" not in raw and b"example" not in raw
    assert email_from_token(secret, token) == "priya@example.org"
    # a token of the first version, in digests already sent, is still honoured
    import hashlib
    import hmac
    legacy_sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), b"priya@example.org", hashlib.sha256)
                                          .digest()[:18]).decode().rstrip("=")
    legacy = base64.urlsafe_b64encode(b"priya@example.org").decode().rstrip("=") + "." + legacy_sig
    assert email_from_token(secret, legacy) == "priya@example.org"
    assert email_from_token(secret, legacy.split(".")[0] + ".") is None  # an empty signature is nothing


# ---------------------------------------------------------------- 6. tables in a pipe and at 80 columns


@pytest.fixture(scope="module")
def long_ids_store(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tables")
    config = write_config(directory, [
        {"name": "hf-trending-papers-source", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")},
        {"name": "blog", "type": "feed", "url": str(REALWORLD / "hf-blog-rss.xml")}],
        extra="    name: A Reader With A Long Name\n" + TOPICS
        + "  - email: someone.with.a.very.long.address@subdomain.example.org\n" + TOPICS
        + "  - email: paused@example.org\n    enabled: false\n" + TOPICS, state=fresh_database(directory))
    assert digest("-c", str(config), "fetch").returncode == 0
    return config


def test_papers_in_a_pipe_are_tab_separated_and_whole(long_ids_store):
    result = digest("-c", str(long_ids_store), "papers")  # stdout is a pipe here
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "title", "first seen", "▲", "categories", "sources"]
    rows = [l.split("\t") for l in lines[1:] if "\t" in l]
    assert all(len(r) == 6 for r in rows)
    titles = {r[1] for r in rows}
    assert any(len(t) > 80 for t in titles) and not any(t.endswith("…") for t in titles)  # nothing cut
    assert any(r[0].startswith("url:https://huggingface.co/blog/") for r in rows)


def terminal(*args: str, columns: int = 80) -> str:
    """The command's output on a pseudo-terminal of `columns` columns."""
    import pty

    env = {**{k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}, "COLUMNS": str(columns), "TERM": "dumb"}
    parent, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "digest", *args], stdout=child, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(parent)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_papers_and_status_fit_80_columns(long_ids_store):
    text = terminal("-c", str(long_ids_store), "papers", "--limit", "5")
    lines = text.splitlines()
    assert all(len(l) <= 80 for l in lines), max(lines, key=len)
    assert sum("MiniMax" in l or "EvoArena" in l or "Robust" in l for l in lines) or len(lines) > 5
    header = lines[0]
    assert "title" in header and header.index("title") < 20  # the id column leaves room for titles
    status = terminal("-c", str(long_ids_store), "status")
    assert all(len(l) <= 80 for l in status.splitlines())
    flat = status.replace("\n", "")
    assert "someone.with.a.very.long.address@subdomain.example.org" in "".join(flat.split())  # never cut
    assert any("paused@example.org" in l and "paused" in l.split("paused@example.org")[1] for l in status.splitlines())


def test_status_labels_unsubscribed_and_paused(long_ids_store):
    assert digest("-c", str(long_ids_store), "unsubscribe", "alice@example.org").returncode == 0
    rows = digest("-c", str(long_ids_store), "status").stdout.splitlines()
    by = {r.split("\t")[0]: r.split("\t") for r in rows[1:]}
    assert by["alice@example.org"][1] == "unsubscribed" and by["paused@example.org"][1] == "paused"
    assert by["someone.with.a.very.long.address@subdomain.example.org"][1] == "active"
    assert digest("-c", str(long_ids_store), "unsubscribe", "alice@example.org", "--undo").returncode == 0


# ---------------------------------------------------------------- 7. -c anywhere, digest init


@pytest.mark.no_postgresql
def test_config_option_after_the_command_and_init(tmp_path):
    result = digest("init", str(tmp_path / "new"))
    assert result.returncode == 0 and "wrote" in result.stdout
    assert f"cd {tmp_path / 'new'} (or give each command -c {tmp_path / 'new' / 'subscribers.yaml'})" in result.stdout
    written = tmp_path / "new" / "subscribers.yaml"
    assert written.read_text() == (ROOT / "subscribers.yaml").read_text()  # the commented example, as shipped
    env = {**os.environ, "DIGEST_SMTP_PASSWORD": "x"}
    for args in (["validate", "-c", str(written)], ["-c", str(written), "validate"]):
        run = subprocess.run([sys.executable, "-m", "digest", *args], capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0 and "OK" in run.stdout, run.stderr
    again = digest("init", str(tmp_path / "new"))
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites a config
    (tmp_path / "a-file").write_text("")
    demo = digest("demo", "--out", str(tmp_path / "a-file" / "below"))  # the same, after all the demo's work
    assert demo.returncode == 1 and "cannot write the demo's messages to" in demo.stderr
    nowhere = digest("init", str(tmp_path / "a-file" / "below"))  # it ended in "internal error: FileNotFoundError"
    assert nowhere.returncode == 1 and f"cannot write {tmp_path / 'a-file' / 'below' / 'subscribers.yaml'}" in nowhere.stderr


@pytest.mark.no_postgresql
def test_the_packaged_example_is_the_repositorys():
    assert (ROOT / "digest" / "starter" / "subscribers.yaml").read_text() == (ROOT / "subscribers.yaml").read_text()


@pytest.mark.no_postgresql
def test_a_config_or_csv_that_is_no_file_is_refused_not_read_for_ever(tmp_path):
    """`-c /dev/zero` read until memory ran out ("internal error: MemoryError"), and a named
    pipe waited for a writer for ever."""
    os.mkfifo(tmp_path / "pipe")
    for path in ("/dev/zero", str(tmp_path / "pipe")):
        result = digest("-c", path, "validate")
        assert result.returncode == 2 and f"{path}: cannot read it: {path} is not a file" in result.stderr
    config = tmp_path / "subscribers.yaml"
    config.write_text((ROOT / "subscribers.yaml").read_text())
    result = digest("-c", str(config), "subscribers", "import", "/dev/zero")
    assert result.returncode == 2 and "cannot read /dev/zero: /dev/zero is not a file" in result.stderr


@pytest.mark.no_postgresql
def test_a_missing_config_points_to_init(tmp_path):
    result = digest("validate", cwd=tmp_path)
    assert result.returncode == 2 and "digest init" in result.stderr


# ---------------------------------------------------------------- 8. exit codes


def test_unknown_subscriber_exits_2_everywhere(long_ids_store):
    for command in (["preview", "nobody@example.org"], ["unsubscribe", "nobody@example.org"],
                    ["send", "nobody@example.org", "--dry-run"]):
        result = digest("-c", str(long_ids_store), *command)
        assert result.returncode == 2 and "no subscriber 'nobody@example.org'" in result.stderr, command


def test_fetch_with_some_sources_failed_and_strict(tmp_path):
    config = write_config(tmp_path, [
        {"name": "ok", "type": "feed", "url": str(REALWORLD / "hf-blog-rss.xml")},
        {"name": "gone1", "type": "feed", "url": "missing-1.xml"},
        {"name": "gone2", "type": "feed", "url": "missing-2.xml"}], state=fresh_database(tmp_path))
    result = digest("-c", str(config), "fetch")
    assert result.returncode == 0 and "2 of 3 sources failed" in result.stderr
    strict = digest("-c", str(config), "fetch", "--strict")
    assert strict.returncode == 1 and "2 of 3 sources failed" in strict.stderr


# ---------------------------------------------------------------- 9. no library chatter


def test_urllib3_warnings_stay_out_of_normal_output(tmp_path, feed_server):
    sources = [{"name": f"s{n}", "type": "feed", "url": feed_server.url(f"/f{n}"), "timeout": 5} for n in range(8)]
    for n in range(8):
        feed_server.serve(f"/f{n}", Reply(500, b"no"), Reply(200, (REALWORLD / "hf-blog-rss.xml").read_bytes()))
    config = write_config(tmp_path, sources, state=fresh_database(tmp_path))
    result = digest("-c", str(config), "fetch")
    assert result.returncode == 0
    assert "urllib3" not in result.stderr and "Retrying" not in result.stderr and "pool" not in result.stderr.lower()
    for n in range(8):
        feed_server.serve(f"/f{n}", Reply(500, b"no"), Reply(200, (REALWORLD / "hf-blog-rss.xml").read_bytes()))
    debug = digest("-c", str(config), "--debug", "fetch")
    assert "urllib3" in debug.stderr  # the library's own words, when asked for


# ---------------------------------------------------------------- 10. SMTP hints


@pytest.mark.no_postgresql
def test_username_with_a_relay_without_auth_says_remove_username(tmp_path, fetched_db):  # noqa: F811
    with SmtpServer() as server:  # aiosmtpd without an authenticator: no AUTH
        config = setup(tmp_path, fetched_db, server.port, ["a@example.org"],
                       smtp_extra="  username: digest\n  password_env: DIGEST_SMTP_PASSWORD\n")
        env = {**os.environ, "DIGEST_SMTP_PASSWORD": "x"}
        result = subprocess.run([sys.executable, "-m", "digest", "-c", str(config), "send"],
                                capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and "offers no login" in result.stderr and "remove smtp.username" in result.stderr


@pytest.mark.no_postgresql
def test_a_port_that_is_not_smtp_fails_in_seconds(tmp_path, fetched_db):  # noqa: F811
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts, never greets (an HTTP port waits for its request)
    try:
        config = setup(tmp_path, fetched_db, silent.getsockname()[1], ["a@example.org"])
        config.write_text(config.read_text().replace("  timeout: 2\n", "  timeout: 30\n  greeting_timeout: 1\n"))
        started = time.monotonic()
        result = digest("-c", str(config), "send")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 1 and "no SMTP greeting" in result.stderr and "smtp.port" in result.stderr
    assert elapsed < 15  # the greeting timeout, not smtp.timeout


# ---------------------------------------------------------------- 11. the unsubscribe page, twice


def test_a_second_visit_says_already_unsubscribed_and_offers_resubscribe(tmp_path):
    store = Store(fresh_database(tmp_path))
    ledger = Ledger(store)
    secret = store.secret()
    web = unsubscribe_server("127.0.0.1:0", secret, ledger)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}/unsubscribe/{unsubscribe_token(secret, 'a@example.org')}"
    try:
        assert "Stop sending" in request(url)[1]
        assert request(url, b"List-Unsubscribe=One-Click")[0] == 200
        status, page = request(url)  # the link opened again
        assert status == 200 and "Already unsubscribed" in page and "Stop sending" not in page
        assert 'name="action" value="resubscribe"' in page
        status, page = request(url, b"List-Unsubscribe=One-Click")  # one-click again: still fine, nothing asked
        assert status == 200 and "Already unsubscribed" in page
        status, page = request(url, b"action=resubscribe")
        assert status == 200 and "again" in page and ledger.state("a@example.org").active
        assert "Stop sending" in request(url)[1]
    finally:
        web.shutdown()


# ---------------------------------------------------------------- 12. e-mail details


@pytest.mark.no_postgresql
def test_footer_highlighting_upvotes_tex_and_the_text_part():
    config = Config(sender=Sender(**{"from": "D <d@example.org>", "reply_to": "admin@example.org"}),
                    base_url="https://digest.example.org")
    subscriber = Subscriber(email="alice@example.org", topics=[Topic(name="Scaling laws", keywords=["scaling law"])])
    mail = compose(config, one_paper_digest(upvotes=1234, hf_url="https://huggingface.co/papers/2611.00001",
                                            title=title_text("Scaling -- a (KV) cache study")), subscriber)
    doc = lxml.html.fromstring(mail.html)
    footer = doc.xpath("//div[contains(@class,'rule')]")[0]
    assert " ".join(footer.text_content().split()).startswith("You get this e-mail because alice@example.org is "
                                                              "subscribed to Paper digest for: Scaling laws.")
    assert footer.xpath(".//a[text()='Manage your topics, schedule or time zone']")  # base_url: a link, not the reply
    replying = compose(Config(sender=config.sender), one_paper_digest(), subscriber)  # without base_url
    footer_text = " ".join(lxml.html.fromstring(replying.html).xpath("//div[contains(@class,'rule')]")[0].text_content().split())
    assert "Scaling laws. To change" in footer_text  # a space between the sentences
    assert "Scaling – a (KV) cache study" in doc.xpath("//h3")[0].text_content()  # TeX's -- is a dash
    counts = [s for s in doc.xpath("//span") if "▲" in s.text_content()]
    assert counts and "white-space:nowrap" in counts[0].get("style") and "▲\u00a01234" in counts[0].text_content()
    assert "Hugging Face: https://huggingface.co/papers/2611.00001" in mail.text


@pytest.mark.parametrize("text, terms, lit", [
    ("a key-value (KV) cache here", ["KV cache"], ["KV", "cache"]),  # never the parenthesis
    ("the KV-cache and KV cache", ["KV cache"], ["KV-cache", "KV cache"]),
    ("reward models and reward modeling", ["reward model*"], ["reward models", "reward modeling"]),
    ("quantized weights, quantization", ["quantiz*"], ["quantized", "quantization"]),
])
@pytest.mark.no_postgresql
def test_highlights_are_what_matched(text, terms, lit):
    assert [text[a:b] for a, b in spans(text, terms)] == lit


def test_preview_of_an_empty_digest_says_nothing_would_be_sent(tmp_path):
    config = write_config(tmp_path, [{"name": "blog", "type": "feed", "url": str(REALWORLD / "hf-blog-rss.xml")}],
                          extra="    topics: [{name: Nothing, keywords: [no-such-term-anywhere]}]\n", state=fresh_database(tmp_path))
    assert digest("-c", str(config), "fetch").returncode == 0
    result = digest("-c", str(config), "preview", "alice@example.org")
    assert result.returncode == 0 and result.stdout == ""
    assert "no e-mail would be sent" in result.stderr and "send_empty" in result.stderr
    as_data = json.loads(digest("-c", str(config), "preview", "alice@example.org", "--format", "json").stdout)
    assert as_data["sections"] == []


# ---------------------------------------------------------------- 13. the demo's samples


@pytest.mark.no_postgresql
def test_demo_samples_link_only_to_the_right_papers_and_do_not_warn(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digest", "-v", "-c", str(ROOT / "examples" / "demo.yaml"), "fetch"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    state = ROOT / "examples" / "demo.db"
    try:
        assert result.returncode == 0 and "stale" not in result.stderr, result.stderr
        store = Store(f"sqlite:///{state}")
        real_ids = {i["paper"]["id"] for i in json.loads((ROOT / "digest/samples/hf-daily-papers-2026-06-12.json").read_text())}
        for paper in store.papers():
            if paper.url.startswith("https://arxiv.org/abs/"):
                assert paper.id in real_ids or "arxiv-api" in paper.sources or paper.sources == ("arxiv",)
            else:
                assert paper.url.startswith("https://arxiv.org/search/?"), paper.url  # a search, never a made-up id
                assert not paper.authors
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
    demo = subprocess.run([sys.executable, "-m", "digest", "demo", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert demo.returncode == 0 and "warning" not in demo.stderr.lower()
    for eml in (tmp_path / "out").glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        assert "example.org" not in message["List-Unsubscribe"].split(",")[0].split("/unsubscribe/")[1]
        assert "2611." not in text  # none of the made-up ids of the test fixtures
