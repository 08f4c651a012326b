"""The subscription centre's notices (confirm; manage, asked or already subscribed): rendered with
the digest's stack, the link exactly once per part's purpose, nothing a visitor typed in them."""

from __future__ import annotations

import email
import email.policy
import fnmatch
import logging
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest

from digest import notice_message
from digest.config import Config, Defaults, Sender
from digest.render.notice import duration, notice_renderer, notice_values, probe_values
from digest.render.renderer import NaiveRenderer, TemplateError, builtin_templates

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
SITE = "https://digest.example.org"
LINK = "https://digest.example.org/subscription/confirm/Zk3lQm0aB9xYq2Wv7tR1uHc?x=1&y=2"
# Nothing of the address may come back in the body: its local part and its domain are words
# found nowhere else.
TO = "qzv.recipient7@mailhost-unique.example"
VARIANTS = [("confirm", "asked"), ("manage", "asked"), ("manage", "already")]
URL = re.compile(r"https?://[^\s<>\"')]+")


def config(**extra) -> Config:
    extra.setdefault("base_url", SITE)
    return Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>", "reply_to": "admin@example.org",
                                   "list_name": "NLP Lab Papers"}), **extra)


def parts(message) -> tuple[str, str]:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    text, html = (parsed.get_body((subtype,)).get_content() for subtype in ("plain", "html"))
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")  # as sent: CRLF line ends


def render(kind: str = "confirm", reason: str = "asked", cfg: Config | None = None, **extra):
    extra.setdefault("expires", NOW + timedelta(hours=48))
    return notice_message(cfg or config(), kind, TO, LINK, now=NOW, reason=reason, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind,reason", VARIANTS)
def test_each_notice_is_a_text_and_html_message_with_transactional_headers(kind, reason):
    message = render(kind, reason)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["From"] == "Paper Digest <digest@example.org>" and parsed["Reply-To"] == "admin@example.org"
    assert parsed["To"] == TO and parsed["Auto-Submitted"] == "auto-generated" and parsed["Content-Language"] == "en"
    assert parsed["Date"] == "Sun, 22 Nov 2026 07:30:00 +0000" and parsed["Message-ID"].endswith("@example.org>")
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    assert parsed["Subject"] == {"confirm": "Confirm your subscription to NLP Lab Papers",
                                 "manage": "Your link to manage your NLP Lab Papers subscription"}[kind]


@pytest.mark.parametrize("kind,reason", VARIANTS)
def test_the_link_is_in_both_parts_exactly_and_the_only_one_but_the_site(kind, reason):
    text, html = parts(render(kind, reason))
    assert f"\n{LINK}\n" in text  # on a line of its own, whole
    assert set(URL.findall(text)) == {LINK, SITE}
    doc = lxml.html.fromstring(html)
    hrefs = [a.get("href") for a in doc.xpath("//a")]
    assert set(hrefs) == {LINK, SITE} and hrefs.count(LINK) == 2  # the button, and the same link written out
    button = doc.xpath("//td[contains(@class, 'btn')]//a")[0]
    assert button.get("href") == LINK
    assert button.text_content() == ("Confirm my subscription" if kind == "confirm" else "Manage my subscription")
    assert LINK in doc.text_content()  # to copy when the button does not work
    assert {u for u in URL.findall(html) if "w3.org" not in u and "microsoft" not in u} == {LINK.replace("&", "&amp;"), SITE}


def test_the_wording_of_each_kind_and_reason():
    confirm_text, confirm_html = parts(render("confirm"))
    asked_text, asked_html = parts(render("manage", "asked"))
    already_text, already_html = parts(render("manage", "already"))
    for text in (confirm_text, lxml.html.fromstring(confirm_html).text_content()):
        flat = " ".join(text.split())
        assert "Please confirm that you want to receive NLP Lab Papers" in flat
        assert "If you did not ask for this, you can ignore this e-mail: you will not be subscribed, and nothing more will be sent to you." in flat
    for text in (already_text, lxml.html.fromstring(already_html).text_content()):
        flat = " ".join(text.split())
        assert "Someone (maybe you) asked to subscribe this address to NLP Lab Papers. It is already subscribed" in flat
        assert "here is your link to change your topics" in flat.lower()
    for text in (asked_text, lxml.html.fromstring(asked_html).text_content()):
        flat = " ".join(text.split())
        assert "Here is your link to manage your NLP Lab Papers subscription" in flat
        assert "already subscribed" not in flat and "Please confirm" not in flat
    assert "Please confirm" not in already_text and "Someone (maybe you)" not in confirm_text
    assert lxml.html.fromstring(already_html).xpath("//h1")[0].text == "You are already subscribed"
    assert lxml.html.fromstring(confirm_html).xpath("//h1")[0].text == "Confirm your subscription"


@pytest.mark.parametrize("kind,reason", VARIANTS)
def test_nothing_of_the_recipient_comes_back_in_the_body(kind, reason):
    message = render(kind, reason)
    text, html = parts(message)
    raw_body = message.as_bytes().split(b"\r\n\r\n", 1)[1].decode("ascii").lower()
    for piece in ("qzv", "recipient7", "mailhost-unique", TO):
        assert piece not in text.lower() and piece not in html.lower() and piece not in raw_body
    assert message.as_bytes().lower().count(b"qzv.recipient7") == 1  # the To header, only


def test_the_expiry_is_shown_in_both_parts():
    text, html = parts(render("confirm", expires=NOW + timedelta(hours=48)))
    shown = "This link expires in 48 hours (Tuesday 24 November 2026, 07:30 UTC)."
    assert shown in " ".join(text.split()) and shown in " ".join(lxml.html.fromstring(html).text_content().split())
    assert "the link expires in 48 hours" in lxml.html.fromstring(html).xpath("//div[@class='preheader']")[0].text
    # the list's time zone (the configuration's default; a visitor's own is not known, nor asked)
    text, _ = parts(render("confirm", cfg=config(defaults=Defaults(timezone="Europe/Paris")),
                           expires=NOW + timedelta(minutes=30)))
    assert "This link expires in 30 minutes (Sunday 22 November 2026, 09:00 CET)." in " ".join(text.split())


def test_without_an_expiry_none_is_claimed():
    text, html = parts(render("manage", expires=None))
    assert "expires" not in text and "expires" not in html


@pytest.mark.parametrize("seconds,label", [(60, "1 minute"), (30 * 60, "30 minutes"), (119 * 60, "119 minutes"),
                                           (2 * 3600, "2 hours"), (48 * 3600 - 20, "48 hours"),
                                           (71 * 3600, "71 hours"), (72 * 3600, "3 days"), (7 * 86400, "7 days"),
                                           (100 * 3600, "100 hours")])
def test_durations_read_as_a_person_counts(seconds, label):
    assert duration(seconds) == label


def test_the_site_is_the_configurations_and_left_out_without_one():
    _, html = parts(render("confirm"))
    footer = lxml.html.fromstring(html).xpath("//div[contains(@class, 'rule')]")[0]
    assert footer.xpath(".//a")[0].get("href") == SITE and footer.xpath(".//a")[0].text == "digest.example.org"
    text, html = parts(render("confirm", cfg=config(base_url=None)))
    assert set(URL.findall(text)) == {LINK}
    assert {a.get("href") for a in lxml.html.fromstring(html).xpath("//a")} == {LINK}


def test_a_list_name_with_quotes_and_ampersands_reads_as_written():
    cfg = Config(sender=Sender(**{"from": "digest@example.org", "list_name": 'Lab "Papers" & Co\'s'}), base_url=SITE)
    message = render("confirm", cfg=cfg)
    text, html = parts(message)
    assert message["Subject"] == 'Confirm your subscription to Lab "Papers" & Co\'s'
    doc = lxml.html.fromstring(html)
    assert doc.xpath("//title")[0].text == "Confirm your subscription to Lab 'Papers' & Co's"
    assert 'receive Lab "Papers" & Co\'s at this address' in doc.text_content()
    assert 'receive Lab "Papers" & Co\'s at this address' in " ".join(text.split())


# ---------------------------------------------------------------- the same stack and look as the digest


def test_the_html_passes_the_digests_checks():
    _, html = parts(render("confirm"))
    doc = lxml.html.fromstring(html)
    assert doc.get("lang") == "en" and doc.xpath("//h1")
    assert not doc.xpath("//script") and not doc.xpath("//*[starts-with(local-name(), 'mj-')]")
    assert "{{" not in html and "{%" not in html
    assert "prefers-color-scheme: dark" in html and '<meta name="color-scheme"' in html
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "font-size:22px" in doc.xpath("//h1")[0].get("style").replace(" ", "")  # <mj-style> inlined
    assert len(html.encode("utf-8")) < 20_000


def test_compiled_once_and_byte_for_byte_the_full_chain():
    renderer = notice_renderer(None)
    assert renderer.compiled, renderer.fallback_reason
    assert notice_renderer(None) is renderer  # one per templates folder, kept
    for values in probe_values():
        assert renderer.html(values) == NaiveRenderer.html(renderer, values)


def test_text_part_reads_on_its_own():
    for kind, reason in VARIANTS:
        text, _ = parts(render(kind, reason))
        assert "<" not in text and "&amp;" not in text and "{" not in text
        assert max(len(line) for line in text.splitlines() if "http" not in line) <= 76
        assert text.startswith(render(kind, reason)["Subject"] + "\n")
        assert "\n-- \n" in text  # the signature separator


def test_each_notice_has_its_own_message_id():
    first, again, later = render("manage"), render("manage"), notice_message(config(), "manage", TO, LINK, now=NOW + timedelta(seconds=1))
    assert first["Message-ID"] == again["Message-ID"] != later["Message-ID"]
    assert render("confirm")["Message-ID"] != first["Message-ID"]


# ---------------------------------------------------------------- a user's own templates


def test_own_templates_win_from_the_configurations_folder(tmp_path):
    (tmp_path / "notice.txt.j2").write_text("Custom {{ kind }}/{{ reason }}: {{ link }}\n", encoding="utf-8")
    message = render("manage", "already", cfg=config(templates=str(tmp_path)))
    text, html = parts(message)
    assert text == f"Custom manage/already: {LINK}\n"
    assert "Someone (maybe you)" in html  # the HTML template is still the built-in one
    source = (builtin_templates() / "notice.mjml.j2").read_text(encoding="utf-8")
    (tmp_path / "notice.mjml.j2").write_text(source.replace("Confirm your subscription</h1>", "Please confirm</h1>"),
                                             encoding="utf-8")
    _, html = parts(render("confirm", templates=tmp_path))  # the argument, as the web app may pass it
    assert lxml.html.fromstring(html).xpath("//h1")[0].text == "Please confirm"
    assert notice_renderer(tmp_path).compiled


def test_an_edited_template_is_seen_at_the_next_notice_without_a_restart(tmp_path):
    own = tmp_path / "notice.txt.j2"
    own.write_text("First {{ link }}\n", encoding="utf-8")
    assert parts(render("confirm", templates=tmp_path))[0] == f"First {LINK}\n"
    renderer = notice_renderer(tmp_path)
    assert notice_renderer(tmp_path) is renderer  # unchanged: the compiled one, kept
    own.write_text("Second, longer {{ link }}\n", encoding="utf-8")
    assert parts(render("confirm", templates=tmp_path))[0] == f"Second, longer {LINK}\n"


def test_a_templates_folder_lost_under_the_web_app_still_mails_the_notice(tmp_path, caplog):
    """A sign-up's confirmation is mailed with the built-in templates, said loudly (the
    folder is checked at start: `digest validate`, `digest run`)."""
    with caplog.at_level(logging.ERROR):
        text, _ = parts(render("confirm", cfg=config(templates=str(tmp_path / "gone"))))
    assert LINK in text
    assert f"templates: no such folder: {tmp_path / 'gone'}; notices use the built-in templates" in caplog.text


def test_an_own_template_error_names_file_and_line(tmp_path):
    (tmp_path / "notice.txt.j2").write_text("Hello\n{{ no_such_value }}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        render("confirm", templates=tmp_path)
    assert "notice.txt.j2:2" in str(caught.value) and "no_such_value" in str(caught.value)


def test_mjml_a_notice_template_cannot_read_names_that_template(tmp_path):
    source = (builtin_templates() / "notice.mjml.j2").read_text(encoding="utf-8")
    (tmp_path / "notice.mjml.j2").write_text(source.replace("</mj-column>", "", 1), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"template error in notice\.mjml\.j2 .*its MJML cannot be read"):
        render("confirm", templates=tmp_path)


def test_the_templates_are_installed():
    """A non-editable install ships the notice templates (pyproject's package data)."""
    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["digest.templates"]
    for name in ("notice.mjml.j2", "notice.txt.j2"):
        assert (builtin_templates() / name).is_file()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


# ---------------------------------------------------------------- refused


@pytest.mark.parametrize("link", ["javascript:alert(1)", "mailto:a@example.org", "digest.example.org/x", ""])
def test_only_an_http_link_is_sent(link):
    with pytest.raises(ValueError):
        notice_message(config(), "confirm", TO, link, now=NOW)


def test_unknown_kinds_reasons_and_bad_times_are_refused():
    with pytest.raises(ValueError):
        notice_message(config(), "welcome", TO, LINK, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        notice_message(config(), "manage", TO, LINK, now=NOW, reason="because")
    with pytest.raises(ValueError):
        notice_message(config(), "confirm", TO, LINK, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError):
        notice_message(config(), "confirm", TO, LINK, now=NOW, expires=NOW - timedelta(seconds=1))
    assert notice_values(config(), "confirm", LINK, now=NOW)["expires_in"] == ""
