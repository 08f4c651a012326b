"""Configurations that used to pass `validate` and then fail forever, or crash: each is a
located error now; and a fuzzer over YAML documents built from the schema finds no input that
ends anywhere but in a Config or a ConfigError (and a valid one always makes a message)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import parse_config
from digest.errors import ConfigError
from digest.match import Matcher
from digest.models import Paper
from digest.render.message import build_message

BASE = {"sender": {"from": "Digest <d@example.org>"},
        "subscribers": [{"email": "a@example.org", "topics": [{"name": "t", "keywords": ["LLM"]}]}]}


def as_yaml(document: dict) -> str:
    """JSON is YAML, but for YAML's own spelling of infinity and not-a-number."""
    return json.dumps(document, allow_nan=True).replace("NaN", ".nan").replace("-Infinity", "-.inf") \
        .replace("Infinity", ".inf")


def problems(document: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(as_yaml(document), Path("subscribers.yaml"))
    return [str(p) for p in info.value.problems]


def with_(path: tuple, value) -> dict:  # noqa: ANN001
    document = json.loads(json.dumps(BASE))
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value, expected", [
    (("subscribers", 0, "name"), "Alice\r\nBcc: everyone@example.org", "subscribers[0].name: 'Alice\\r\\nBcc"),
    (("sender", "list_name"), "Lab\nPapers", "sender.list_name: 'Lab\\nPapers' has a line break"),
    (("subscribers", 0, "topics", 0, "name"), "Topic\x00", "subscribers[0].topics[0].name: 'Topic\\x00' has"),
    (("subscribers", 0, "email"), "prïya@example.org", "subscribers[0].email: 'prïya@example.org': addresses with non-ASCII"),
    (("listen",), "127.0.0.1:99999", "listen: expected host:port with a port from 1 to 65535"),
    (("defaults",), {"lookback": "99999999d"}, "defaults.lookback: '99999999d' is far too long"),
    (("defaults",), {"lookback": "400d"}, "defaults.lookback: should be at most 365 days"),
    (("defaults",), {"grace": "30d"}, "defaults.grace: should be at most 7 days"),
    (("fetch_wait",), "2h", "fetch_wait: should be at most 1 hour"),  # not "at most 0 days"
    (("subscribers", 0, "topics", 0, "query"), "(" * 5000 + "x" + ")" * 5000, "subscribers[0].topics[0].query"),
    (("subscribers", 0, "topics", 0, "query"), "NOT " * 100 + "x", "nested more than 32 levels deep"),
    (("fetch",), "every 0m", "fetch: expected 'every 30m'"),
    (("smtp",), {"timeout": float("inf")}, "smtp.timeout:"),
    (("smtp",), {"rate_limit": float("nan")}, "smtp.rate_limit:"),
    (("sources",), [{"name": "x", "type": "feed", "url": "f.xml", "timeout": float("inf")}], "sources[0].timeout:"),
])
def test_values_that_failed_later_are_located_errors(path, value, expected):
    found = problems(with_(path, value))
    assert any(expected in p for p in found), found


def test_a_non_ascii_domain_is_kept_in_its_idna_form():
    config = parse_config(json.dumps(with_(("subscribers", 0, "email"), "priya@exämple.org")), Path("s.yaml"))
    assert config.subscribers[0].email == "priya@xn--exmple-cua.org"


# ---------------------------------------------------------------- the fuzzer

NASTY_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\r\n", "a\x00b", "∞", "9" * 50, "every 0m", "daily 25:00", "-1", "1e400", "null",
                     "(((", "NOT NOT", "a@b", "x@example.org", "Europe/Berlin", "cs.*", "quantiz*", "1d", "0d",
                     "999999999999w", "127.0.0.1:0", ":99999", "sqlite:///x.db", "http://", "https://e.org"]),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                   st.floats(allow_nan=True, allow_infinity=True), NASTY_TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(NASTY_TEXT, inner, max_size=3)), max_leaves=8)

TOPIC_KEYS = ["name", "keywords", "query", "exclude", "categories", "authors", "min_upvotes"]
SUBSCRIBER_KEYS = ["email", "name", "timezone", "schedule", "max_papers", "max_per_topic", "trending", "lookback",
                   "send_empty", "enabled"]
SMTP_KEYS = ["host", "port", "security", "username", "password_env", "timeout", "greeting_timeout", "rate_limit",
             "connections", "retries", "retry_wait", "suspend_after", "verify_certificates"]
DEFAULT_KEYS = ["schedule", "timezone", "max_papers", "max_per_topic", "trending", "lookback", "send_empty", "grace"]
SOURCE_KEYS = ["name", "type", "url", "categories", "query", "limit", "timeout", "max_bytes", "format", "enabled"]


def section(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from(keys), VALUE, max_size=4)


DOCUMENTS = st.fixed_dictionaries(
    {"sender": st.one_of(st.just({"from": "D <d@example.org>"}), section(["from", "reply_to", "list_name"]))},
    optional={
        "smtp": section(SMTP_KEYS), "defaults": section(DEFAULT_KEYS), "listen": VALUE, "fetch": VALUE,
        "state": VALUE, "base_url": VALUE,
        "sources": st.lists(section(SOURCE_KEYS), max_size=2),
        "subscribers": st.lists(st.fixed_dictionaries({"email": st.one_of(st.just("a@example.org"), VALUE)},
                                                      optional={k: VALUE for k in SUBSCRIBER_KEYS if k != "email"}
                                                      | {"topics": st.lists(section(TOPIC_KEYS), max_size=2)}),
                                max_size=2),
    })

PAPER = Paper(id="2611.00001", title="An LLM paper", url="https://arxiv.org/abs/2611.00001", abstract="About LLM.",
              first_seen_at=datetime(2026, 11, 22, tzinfo=UTC), upvotes=3, categories=("cs.CL",), authors=("A B",))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_no_configuration_ends_in_an_internal_error(document):
    try:
        config = parse_config(as_yaml(document), Path("subscribers.yaml"))
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    # A configuration that loads can be used: matched, and its addresses and names put in headers.
    now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    for digest in Matcher(config.subscribers, config.defaults, [PAPER]).digests(config.subscribers, now):
        subscriber = next(s for s in config.subscribers if s.email == digest.subscriber)
        build_message(sender=config.sender.from_, reply_to=config.sender.reply_to, to=subscriber.email,
                      to_name=subscriber.name, subject="s", text="t", html="<p>h</p>", date=now, msg_id="<m@x>",
                      unsubscribe_url=None, unsubscribe_mailto=None,
                      list_name=config.sender.list_name).as_bytes()
