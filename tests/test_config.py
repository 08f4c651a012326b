"""Configuration: the example works; every mistake is reported, located, at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digest.config import Topic, load_config, parse_config
from digest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
sender:
  from: "Paper Digest <digest@example.org>"
sources:
  - name: arxiv-ml
    type: arxiv
    categories: [cs.CL, cs.LG]
subscribers:
  - email: alice@example.org
    topics:
      - name: Efficient inference
        keywords: [KV cache]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("subscribers.yaml"))
    return [str(p) for p in info.value.problems]


def test_the_shipped_example_is_valid():
    config = load_config(ROOT / "subscribers.yaml")
    assert [s.type for s in config.sources] == ["arxiv", "huggingface", "arxiv-api"]
    assert config.smtp.password_env == "DIGEST_SMTP_PASSWORD"
    assert config.database_url() == f"sqlite:///{ROOT / 'digest.db'}"


def test_minimal_config_gets_defaults():
    config = parse_config(GOOD, Path("/srv/digest/subscribers.yaml"))
    assert config.defaults.max_papers == 25 and config.defaults.timezone == "UTC"
    assert config.sources[0].announce_types == ["new", "cross"]
    assert config.database_url() == "sqlite:////srv/digest/digest.db"


def test_every_problem_at_once_with_line_and_path():
    text = GOOD.replace("keywords: [KV cache]", 'keywords: "KV cache"').replace(
        "  - email: alice@example.org", "  - email: alice@example.org\n    timezone: Europe/Berlinn")
    text = text.replace("    type: arxiv\n", "    type: arxiv\n    catgories: [cs.AI]\n")
    found = problems(text)
    assert found == [
        "subscribers.yaml:6 sources[0].catgories: unknown key 'catgories'; did you mean 'categories'?",
        "subscribers.yaml:10 subscribers[0].timezone: unknown time zone 'Europe/Berlinn' "
        "(use an IANA name such as Europe/Berlin or UTC); did you mean 'Europe/Berlin'?",
        "subscribers.yaml:13 subscribers[0].topics[0].keywords: expected a list of strings",
    ]


@pytest.mark.parametrize("change, expected", [
    (("alice@example.org", "alice-at-example.org"), "subscribers.yaml:8 subscribers[0].email: invalid e-mail address"),
    (("alice@example.org", "a" * 65 + "@example.org"), "65 characters before the @-sign, at most 64"),
    (("  - email: alice@example.org\n", '  - email: alice@example.org\n    name: "Ada \\u202eevil"\n'),
     "has a right-to-left override or other direction control"),
    (("  - email: alice@example.org\n", '  - email: alice@example.org\n    name: "=?utf-8?q?=41?="\n'),
     "holds a MIME encoded word"),
    (("type: arxiv", "type: rss"), "subscribers.yaml:5 sources[0].type: unknown source type 'rss'"),
    (("type: arxiv", "type: arxive"), "did you mean 'arxiv'?"),
    (("[cs.CL, cs.LG]", "[cs.CL, 42]"), "subscribers.yaml:6 sources[0].categories: expected a list of strings"),
    (("[cs.CL, cs.LG]", "[cs.CL, 'machine learning']"), "is not an arXiv category"),
    (("sender:", "sendr:"), "unknown key 'sendr'; did you mean 'sender'?"),
    (("  - email: alice@example.org\n", "  - email: alice@example.org\n    timezone: Paris\n"),
     "unknown time zone 'Paris' (use an IANA name such as Europe/Berlin or UTC); did you mean 'Europe/Paris'?"),
    (("  - email: alice@example.org\n", "  - email: alice@example.org\n    timezone: new york\n"),
     "did you mean 'America/New_York'?"),
    (("    topics:\n", "   topics:\n"), "subscribers.yaml:9: invalid YAML: while parsing a block collection"),
    (("    topics:\n", "   topics:\n"), "(check the indentation on this line and the one before"),
    (("    topics:\n", "\ttopics:\n"), "no tabs)"),
])
def test_single_mistakes(change, expected):
    found = problems(GOOD.replace(*change))
    assert any(expected in p for p in found), found


def test_wrong_types_and_values():
    text = GOOD + "smtp:\n  port: lots\n  security: tls\ndefaults:\n  max_papers: 0\n  schedule: hourly\n"
    found = problems(text)
    assert "subscribers.yaml:13 smtp.port: expected a whole number" in found
    assert "subscribers.yaml:14 smtp.security: expected one of 'starttls', 'ssl' or 'none', not 'tls'" in found
    assert any(p.startswith("subscribers.yaml:16 defaults.max_papers: should be greater than or equal to 1") for p in found)
    assert any(p.startswith("subscribers.yaml:17 defaults.schedule: expected 'daily HH:MM'") for p in found)


def test_duplicate_subscribers_and_sources():
    text = GOOD + "  - email: Alice@Example.org\n"
    text = text.replace("sources:\n", "sources:\n  - {name: arxiv-ml, type: huggingface}\n")
    found = problems(text)
    assert any("sources[1].name: duplicate source name 'arxiv-ml'" in p for p in found)
    assert any("subscribers[1].email: duplicate subscriber 'Alice@Example.org'" in p for p in found)


def test_missing_required_keys_are_named():
    found = problems("sources:\n  - name: x\n    type: feed\n")
    assert "subscribers.yaml:1 sender: required key 'sender' is missing" in found
    assert "subscribers.yaml:2 sources[0].url: required key 'url' is missing" in found


def test_yaml_syntax_error_is_located():
    found = problems("sender:\n  from: [unclosed\nsources: []\n")
    assert len(found) == 1 and found[0].startswith("subscribers.yaml:3: invalid YAML")


def test_duplicate_yaml_key_is_an_error():
    found = problems(GOOD + "sender:\n  from: x@example.org\n")
    assert "invalid YAML" in found[0] and "duplicate" in found[0].lower()


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(tmp_path / "empty.yaml")


def test_config_path_from_environment(tmp_path, monkeypatch):
    (tmp_path / "x.yaml").write_text(GOOD)
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "x.yaml"))
    assert load_config().path == tmp_path / "x.yaml"


def test_password_comes_from_the_named_environment_variable(monkeypatch):
    config = parse_config(GOOD + "smtp:\n  password_env: MY_SMTP_PW\n", Path("s.yaml"))
    monkeypatch.setenv("MY_SMTP_PW", "hunter2")
    assert config.smtp.password() == "hunter2"
    assert "hunter2" not in repr(config)


def _large_config(tmp_path: Path, people: int = 800) -> Path:
    """A file past the cache's threshold: many subscribers."""
    lines = ['sender:', '  from: "Paper Digest <digest@example.org>"', "subscribers:"]
    lines += [f"  - {{email: reader{n}@example.org, name: Reader {n}, topics: [{{name: LLMs, keywords: [LLM, "
              f"language model, reasoning]}}, {{name: Vision, keywords: [diffusion]}}]}}" for n in range(people)]
    path = tmp_path / "subscribers.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_large_file_is_parsed_once_per_change(tmp_path):
    import json

    from digest.config import CACHE_FROM

    path = _large_config(tmp_path)
    assert path.stat().st_size >= CACHE_FROM
    first = load_config(path)
    cache = tmp_path / ".subscribers.yaml.parsed.json"
    assert cache.exists() and cache.stat().st_mode & 0o777 == 0o600  # it holds every address
    # The next process reads the cache (proof: a change made to the cached document shows)...
    data = json.loads(cache.read_text())
    data["document"]["subscribers"][0]["name"] = "From the cache"
    cache.write_text(json.dumps(data))
    assert load_config(path).subscribers[0].name == "From the cache"
    # ...never for a changed file, and never where lines are wanted (`digest validate`)
    assert load_config(path, locate=True).subscribers[0].name == "Reader 0"
    assert load_config(path, locate=True).line_of("subscribers", 5, "email") == 9
    path.write_text(path.read_text().replace("Reader 1,", "Reader One,"), encoding="utf-8")
    again = load_config(path)
    assert again.subscribers[0].name == "Reader 0" and again.subscribers[1].name == "Reader One"
    assert [s.email for s in again.subscribers] == [s.email for s in first.subscribers]
    # a broken file is reported with its lines, whatever the cache holds
    path.write_text(path.read_text().replace("reader7@example.org", "not-an-address"), encoding="utf-8")
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    assert any(p.line == 11 for p in failure.value.problems), failure.value.problems


# ---------------------------------------------------------------- topics' examples


def test_examples_are_arxiv_ids_once_each_and_a_bad_one_says_where_and_what_to_do(tmp_path):
    topic = Topic(name="T", description="Testing.", examples=[
        "2406.01234", "arXiv:2406.01234v2", " https://arxiv.org/abs/2310.06825 ", "https://arxiv.org/pdf/2401.00002v3.pdf",
        "https://huggingface.co/papers/2402.00003", "hep-th/9901001v1"])
    assert topic.examples == ["2406.01234", "2310.06825", "2401.00002", "2402.00003", "hep-th/9901001"]
    many = ", ".join(f'"2406.{n:05d}"' for n in range(21))
    text = """sender: {from: digest@example.org}
subscribers:
  - email: a@example.org
    topics:
      - name: Testing
        description: Statistical tests.
        examples: ["2406.01234", "see https://arxiv.org/abs/2406.01234"]
      - name: Numbers
        keywords: [x]
        examples: [2406.01230]
      - name: Many
        keywords: [x]
        examples: [MANY]
""".replace("MANY", many)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "subscribers.yaml")
    problems = {p.path: (p.line, p.message) for p in caught.value.problems}
    assert problems["subscribers[0].topics[0].examples"][0] == 7
    assert "example 2 ('see https://arxiv.org/abs/2406.01234') is not an arXiv id or link" in \
        problems["subscribers[0].topics[0].examples"][1] and "arXiv:2406.01234v2" in problems["subscribers[0].topics[0].examples"][1]
    assert "in quotes" in problems["subscribers[0].topics[1].examples"][1]  # 2406.01230 would be read as 2406.0123
    assert "21 examples: a topic takes at most 20" in problems["subscribers[0].topics[2].examples"][1]


def test_a_subscribers_topics_have_names_of_their_own():
    """Sections, rating links and learned models go by a topic's name: two alike (whatever
    their case) are refused, where they are."""
    from digest.config import Subscriber

    Subscriber(email="a@example.org", topics=[{"name": "A", "keywords": ["a"]}, {"name": "B", "keywords": ["b"]}])
    twice = [{"name": "A", "keywords": ["a"]}, {"name": "a", "keywords": ["b"]}]
    with pytest.raises(ValueError, match="two topics are named 'a'"):
        Subscriber(email="a@example.org", topics=twice)
    # a profile stored before the rule is still read (its digests go on), not refused mid-send
    from digest.deliver.roster import _subscriber

    stored = _subscriber(json.dumps({"email": "a@example.org", "topics": twice}))
    assert [t.name for t in stored.topics] == ["A", "a"]


def test_a_description_is_a_topic_examples_alone_are_not():
    Topic(name="T", description="Statistical hypothesis tests.", examples=["2403.16981"])  # no keywords needed
    Topic(name="T", description="Statistical hypothesis tests.")  # a sentence alone: matched by closeness to it
    with pytest.raises(ValueError, match="a topic with examples also needs a description"):
        Topic(name="T", examples=["2403.16981"])
    for nothing in ({}, {"description": "  "}):  # a blank description says nothing either
        with pytest.raises(ValueError, match="a topic needs a description .* or keywords"):
            Topic(name="T", **nothing)


def test_a_control_character_in_a_topic_is_refused_where_it_is():
    """A NUL pasted into a form reached e-mails' why-lines ("matched 'speech\\x00 rec'")."""
    Topic(name="T", description="Line one,\nline two\twith a tab.", query='"speech"\n OR ASR')  # lines are fine
    for field, value, said in (("keywords", ["speech\x00 recognition"], "line break or control character"),
                               ("exclude", ["survey\x1b"], "line break or control character"),
                               ("authors", ["Ada\x07 Lovelace"], "line break or control character"),
                               ("description", "Speech\x00 recognition.", "control character"),
                               ("query", '"speech"\x00', "control character")):
        with pytest.raises(ValueError, match=said) as raised:
            Topic(**{"name": "T", "keywords": ["speech"], field: value})
        assert field in str(raised.value)


@pytest.mark.parametrize("state, expected", [
    ("digest.db", "state: 'digest.db' is not a database URL: write sqlite:///digest.db"),
    ("mysql://user@host/db", "state: mysql:// databases are not supported"),  # it said "the PostgreSQL driver is not installed"
    ("sqlite:///", "names no file (an in-memory database forgets every digest sent)"),  # sent everything again each run
    ("sqlite:///:memory:", "names no file"),
])
def test_a_state_url_that_cannot_keep_state_is_refused_at_its_line(state, expected):
    found = problems(GOOD + f"state: '{state}'\n")
    assert any(p.startswith("subscribers.yaml:12 state: ") and expected in p for p in found), found


def test_a_state_urls_scheme_is_read_in_any_case():
    config = parse_config(GOOD + "state: SQLite:///digest.db\n", ROOT / "subscribers.yaml")
    assert config.state == "sqlite:///digest.db"
    assert parse_config(GOOD + "state: postgres://u@h/db\n", ROOT / "subscribers.yaml").state == "postgres://u@h/db"


def test_a_subscriber_is_found_by_the_address_as_written_with_a_unicode_domain():
    """The configuration keeps `john@exämple.org` as john@xn--exmple-cua.org (what SMTP needs):
    `digest preview john@exämple.org` said there was no such subscriber."""
    from digest.config import find_subscriber
    from digest.store.ledger import subscriber_key

    config = parse_config(GOOD.replace("alice@example.org", "John@Exämple.org"), ROOT / "subscribers.yaml")
    assert config.subscribers[0].email == "John@xn--exmple-cua.org"
    for written in ("john@exämple.org", " JOHN@EXÄMPLE.ORG ", "john@xn--exmple-cua.org"):
        assert find_subscriber(config, written) is config.subscribers[0]
        assert subscriber_key(written) == "john@xn--exmple-cua.org"
    assert subscriber_key("not an address ü") == "not an address ü"
