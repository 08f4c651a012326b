"""The subscription centre on its real server (uvicorn on loopback) with a real SMTP server
capturing the mail: sign-up, double opt-in, manage links, and what a hostile visitor tries
(forged and reused tokens, posts without the CSRF field, the honeypot, floods, enumeration)."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from digest.config import Subscriber, load_config
from digest.render.links import confirm_token, unsubscribe_token
from digest.store import Store
from digest.store.directory import Directory
from digest.store.ledger import Ledger, subscriber_state
from digest.store.signups import SignUpStore
from digest.subscribe.centre import Centre, smtp_send
from digest.web.unsubscribe import unsubscribe_server

from .conftest import fresh_database
from .smtp_server import SmtpServer
from .test_deliver import write

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)

PRESETS = """presets:
  - name: Language models
    description: Training, evaluating and serving large language models.
    keywords: [language model, LLM]
  - name: Robotics
    keywords: [robot, manipulation]
"""


class Clock:
    """The centre's clock, moved on by the test (it starts at the real time: papers fetched
    for the preview are first seen now)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def serve_centre(tmp_path, smtp, signups: str = "", *, papers: bool = False, clock: Clock | None = None,  # noqa: ANN201
                 extra: str = ""):
    """The subscription centre on its real server, sign-ups open (`signups`: more of that
    section's settings, as YAML lines), mail to `smtp`; `papers`: the samples fetched first
    (the day's papers the previews match); `extra`: more top-level settings, as YAML lines.
    Returns (server, centre, store, config)."""
    from digest.gather.collect import gather

    path = write(tmp_path, smtp.port, ["yaml@example.org"], state=fresh_database(tmp_path),
                 extra=extra + PRESETS + "signups:\n  open: true\n" + signups)
    config = load_config(path)
    store = Store(config.database_url())
    if papers:
        gather(config, store)
    secret = store.secret()
    centre = Centre(config, store, secret, smtp_send(config), **({"clock": clock} if clock else {}))
    server = unsubscribe_server("127.0.0.1:0", secret, Ledger(store), centre=centre)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, centre, store, config


@pytest.fixture
def site(tmp_path):
    with SmtpServer() as smtp:
        clock = Clock()
        server, centre, store, _ = serve_centre(tmp_path, smtp, "  per_client: 30\n  per_address: 3\n  per_hour: 50\n",
                                                clock=clock)
        try:
            yield Site(server, smtp, centre, store, centre.secret, clock)
        finally:
            server.shutdown()


class Site:
    def __init__(self, server, smtp, centre, store, secret, clock) -> None:
        self.server, self.smtp, self.centre, self.store, self.secret, self.clock = server, smtp, centre, store, secret, clock
        host, port = server.server_address[:2]
        self.base = f"http://{host}:{port}"

    def browser(self) -> Browser:
        return Browser(self.base)

    def mails(self, to: str) -> list:
        return self.smtp.handler.to(to)

    def wait_mails(self, count: int) -> None:
        self.smtp.wait_for(count, timeout=10)
        assert len(self.smtp.handler.received) == count, [m["To"] for m in self.smtp.handler.received]


class Browser:
    """A visitor with a cookie jar (as a browser keeps the CSRF cookie)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict | list, headers: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(fields, doseq=True).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", **(headers or {})}))

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def form(self, path: str) -> dict[str, str]:
        """The hidden fields of the page's form (the CSRF token)."""
        status, html = self.get(path)
        assert status == 200, html
        return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))

    def subscribe(self, email: str, **fields: object) -> tuple[int, str]:
        data = {**self.form("/subscribe"), "email": email, "preset": "Language models",
                "schedule_kind": "daily", "schedule_time": "07:30", "timezone": "Europe/Berlin", "max_papers": "10"}
        data.update({k: v for k, v in fields.items()})
        return self.post("/subscribe", data)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return None


def link_in(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(rf"https://digest\.example\.org(/{path}/[A-Za-z0-9_~-]+)", text)
    assert found, text
    return found.group(1)


def test_sign_up_confirm_by_post_only_then_subscribed(site):
    visitor = site.browser()
    status, html = visitor.subscribe("new@example.org", name="Ada", topic_name_1="Diffusion",
                                     topic_keywords_1="diffusion model, text-to-image")
    assert status == 200 and "Check your inbox" in html
    site.wait_mails(1)
    mail = site.mails("new@example.org")[0]
    assert "Ada" not in mail.as_string() and "Diffusion" not in mail.as_string()  # nothing of theirs before confirming
    path = link_in(mail, "confirm")
    directory = Directory(site.store)
    status, html = visitor.get(path)  # what a mail scanner does: nothing changes
    assert status == 200 and "Confirm my subscription" in html
    assert directory.get(["new@example.org"]) == {}
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    status, html = visitor.post(path, hidden)
    assert status == 200 and "You are subscribed" in html
    row = directory.get(["new@example.org"])["new@example.org"]
    assert row.origin == "self" and row.timezone == "Europe/Berlin" and row.schedule == "daily 07:30"
    assert '"preset":"Language models"' in row.profile and "text-to-image" in row.profile
    assert re.search(r'href="https://digest\.example\.org/manage/[A-Za-z0-9_~-]+"', html)
    # single use: the same link again is refused, and changes nothing; opened again, it says
    # they are subscribed (not "sign up again"), and where to change their topics
    assert visitor.post(path, hidden)[0] == 400
    status, html = visitor.get(path)
    assert status == 200 and "confirmed already" in html and "Sign up again" not in html and 'href="/manage"' in html
    assert "/manage/" not in html  # no manage link to whoever holds an old confirmation link


def test_a_sentence_alone_is_a_topic_of_ones_own(site):
    """A topic of one's own needs a name and a sentence on what it is about, or keywords; with
    neither, the page says so at the topic, and nothing is sent."""
    status, html = site.browser().subscribe("sentence@example.org", preset=[], topic_name_1="Speech",
                                            topic_description_1="Automatic speech recognition and speech synthesis.")
    assert status == 200 and "Check your inbox" in html
    status, html = site.browser().subscribe("nothing@example.org", preset=[], topic_name_1="Speech")
    assert "Check your inbox" not in html and "a topic needs a description" in html, (status, html)
    site.wait_mails(1)
    assert [m["To"] for m in site.smtp.handler.received] == ["sentence@example.org"]


def test_an_existing_address_gets_the_same_answer_and_a_manage_link(site):
    first = site.browser().subscribe("yaml@example.org")
    second = site.browser().subscribe("stranger@example.org")
    assert first[0] == second[0] == 200
    strip = lambda html: re.sub(r"csrf[^>]*", "", html)  # noqa: E731
    assert strip(first[1]) == strip(second[1])
    site.wait_mails(2)
    assert link_in(site.mails("yaml@example.org")[0], "manage")
    assert link_in(site.mails("stranger@example.org")[0], "confirm")
    assert Directory(site.store).get(["stranger@example.org"]) == {}  # pending until confirmed


def test_a_confirmation_link_expires_after_48_hours_and_sign_ups_are_purged_after_a_week(site):
    site.browser().subscribe("late@example.org")
    site.wait_mails(1)
    path = link_in(site.mails("late@example.org")[0], "confirm")
    site.clock.now += timedelta(hours=48, seconds=1)
    visitor = site.browser()
    assert visitor.get(path)[0] == 400
    assert visitor.post(path, visitor.form("/subscribe"))[0] == 400
    assert Directory(site.store).get(["late@example.org"]) == {}
    site.clock.now += timedelta(days=6)
    assert site.centre.purge() == 1
    assert SignUpStore(site.store).get(path.rsplit("/", 1)[1]) is None


def test_forged_and_altered_tokens_are_refused(site):
    visitor = site.browser()
    hidden = visitor.form("/subscribe")
    other_key = Store(site.store.engine.url.render_as_string(hide_password=False)).secret()  # same database: same key
    assert other_key == site.secret
    for token in ["x", confirm_token("another-secret", "abc"), confirm_token(site.secret, "no-such-signup"),
                  confirm_token(site.secret, "abc")[:-2] + "AA", "A" * 3000]:
        assert visitor.get(f"/confirm/{token}")[0] in (400, 404)
        assert visitor.post(f"/confirm/{token}", hidden)[0] in (400, 404)
    assert [row.origin for page in Directory(site.store).pages() for row in page] in ([], ["config"])


def test_posts_without_the_csrf_field_or_from_another_site_change_nothing(site):
    visitor = site.browser()
    fields = {"email": "csrf@example.org", "preset": "Language models"}
    assert visitor.post("/subscribe", fields)[0] == 403  # no cookie, no field
    hidden = visitor.form("/subscribe")
    assert visitor.post("/subscribe", {**fields, "csrf": "0" * 64})[0] == 403
    assert visitor.post("/subscribe", {**fields, **hidden}, {"Origin": "https://evil.example"})[0] == 403
    assert visitor.post("/subscribe", {**fields, **hidden}, {"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert site.browser().post("/subscribe", {**fields, **hidden})[0] == 403  # the field without its cookie
    assert visitor.post("/manage", {"email": "yaml@example.org"})[0] == 403
    assert len(site.smtp.handler.received) == 0


def test_the_honeypot_gets_the_usual_answer_and_nothing_is_sent(site):
    status, html = site.browser().subscribe("bot@example.org", website="http://spam.example")
    assert status == 200 and "Check your inbox" in html
    assert SignUpStore(site.store).mails(site.clock.now - timedelta(days=1)) == 0
    assert len(site.smtp.handler.received) == 0


def test_every_problem_is_shown_at_its_field_and_nothing_is_stored(site):
    status, html = site.browser().subscribe(
        "not-an-address", preset=[], topic_name_1="Long", topic_keywords_1="k" * 5000,
        topic_name_2="Bad query", topic_keywords_2="x", topic_query_2='"KV cache AND (', max_papers="lots")
    assert status == 400
    assert 'id="email-error"' in html and 'id="topic_keywords_1-error"' in html
    assert "5000 characters long: at most 100" in html
    assert 'id="topic_query_2-error"' in html and "Topic 2, query" in html
    assert 'id="max_papers-error"' in html
    assert 'value="Bad query"' in html  # what they typed is kept
    assert "k" * 5000 in html  # kept to correct, escaped as any value
    assert SignUpStore(site.store).mails(site.clock.now - timedelta(days=1)) == 0
    status, html = site.browser().subscribe("ok@example.org", preset=[])
    assert status == 400 and "Pick at least one topic" in html
    topics = {f"topic_name_{n}": f"T{n}" for n in range(1, 23)} | {f"topic_keywords_{n}": "word" for n in range(1, 23)}
    status, html = site.browser().subscribe("many@example.org", **topics)
    assert status == 400 and "at most 20" in html
    flood = {f"topic_name_{n}": "T" for n in range(1, 2701)}  # a 47 KB form: its page came back 3.2 MB
    status, html = site.browser().subscribe("flood@example.org", **flood)
    assert status == 400 and "more than 20 topics: at most 20" in html and len(html) < 100_000, len(html)


def test_numbers_a_form_should_not_send_get_their_field_s_message_never_a_500(site):
    """"²".isdigit() is true and int() refuses it; "--1" passed a strip of "-"; 5,000 digits
    are past int()'s limit; Arabic-Indic digits were stored as a schedule."""
    odd = [{"topic_name_1": "T", "topic_keywords_1": "llm", "topic_sensitivity_1": "²"},
           {"topic_name_1": "T", "topic_keywords_1": "llm", "topic_sensitivity_1": "--1"},
           {"max_papers": "²"}, {"max_papers": "0"}, {"schedule_time": "٠٧:٣٠"},
           {"topic_name_" + "9" * 5000: "T", "topic_keywords_" + "9" * 5000: "llm"}]
    for n, fields in enumerate(odd):
        status, html = site.browser().subscribe(f"odd{n}@example.org", **fields)
        assert status in (200, 400) and "Internal Server Error" not in html, (fields, status)
    assert "Papers at most: at least 1" in site.browser().subscribe("zero@example.org", max_papers="0")[1]
    status, html = site.browser().subscribe("arabic@example.org", schedule_time="٠٧:٣٠")
    assert status == 400 and "a time of day such as 07:30" in html
    status, _ = site.browser().subscribe("sup@example.org", topic_name_1="T", topic_keywords_1="llm",
                                         topic_sensitivity_1="²")
    assert status == 400


def test_one_address_gets_at_most_three_mails_a_day_whoever_asks(site):
    for _ in range(6):
        assert site.browser().subscribe("target@example.org")[0] == 200
    site.smtp.wait_for(3)
    assert len(site.mails("target@example.org")) == 3
    site.clock.now += timedelta(days=1, seconds=1)
    assert site.browser().subscribe("target@example.org")[0] == 200
    site.smtp.wait_for(4)
    assert len(site.mails("target@example.org")) == 4


def test_sub_addresses_of_one_mailbox_share_its_cap(site):
    """"bomb+1@", "bomb+2@"… reach one inbox: three mails a day in all, not three each."""
    for n in range(6):
        assert site.browser().subscribe(f"bomb+{n}@example.org")[0] == 200
    assert site.browser().subscribe("bomb@example.org")[0] == 200
    site.smtp.wait_for(3)
    time.sleep(0.5)  # anything past the cap would have been sent by now
    assert len(site.smtp.handler.received) == 3


def test_a_flood_from_one_client_gets_429_and_at_most_the_allowed_mails(site):
    visitor = site.browser()
    answers = [visitor.subscribe(f"flood{n}@example.org")[0] for n in range(40)]
    assert answers[:30] == [200] * 30 and set(answers[30:]) == {429}
    status, _ = visitor.post("/subscribe", visitor.form("/subscribe"))
    assert status == 429
    site.smtp.wait_for(30)
    assert len(site.smtp.handler.received) == 30


def test_manage_link_requests_answer_the_same_for_anyone(site):
    visitor = site.browser()
    known = visitor.post("/manage", {**visitor.form("/manage"), "email": "yaml@example.org"})
    unknown = visitor.post("/manage", {**visitor.form("/manage"), "email": "nobody@example.org"})
    assert known == unknown and known[0] == 200
    site.wait_mails(1)
    assert link_in(site.mails("yaml@example.org")[0], "manage")


def test_a_fresh_manage_link_retires_the_old_one_after_a_day(site):
    old = site.centre.manage_url("yaml@example.org").rsplit("/", 1)[1]
    assert site.centre.manage_key(old) == "yaml@example.org"
    site.centre.mail_manage_link("yaml@example.org")
    site.wait_mails(1)
    new = link_in(site.mails("yaml@example.org")[0], "manage").rsplit("/", 1)[1]
    assert new != old and site.centre.manage_key(new) == "yaml@example.org"
    assert site.centre.manage_key(old) == "yaml@example.org"  # within the grace period
    site.clock.now += timedelta(days=1, seconds=1)
    assert site.centre.manage_key(old) is None and site.centre.manage_key(new) == "yaml@example.org"


def test_asking_for_manage_links_past_the_cap_never_retires_the_ones_mailed(site):
    """Anyone may ask for anyone's link: past the day's cap nothing is mailed, and nothing
    retired, so the owner always holds a link that works (the last one mailed)."""
    for _ in range(6):
        site.centre.mail_manage_link("yaml@example.org")
    site.wait_mails(3)  # per_address: 3
    last = link_in(site.mails("yaml@example.org")[-1], "manage").rsplit("/", 1)[1]
    assert site.centre.manage_key(last) == "yaml@example.org"
    site.clock.now += timedelta(days=1, seconds=1)
    assert site.centre.manage_key(last) == "yaml@example.org"


def test_sign_ups_are_closed_unless_opened(tmp_path):
    with SmtpServer() as smtp:
        config = load_config(write(tmp_path, smtp.port, ["a@example.org"], state=fresh_database(tmp_path)))
        store = Store(config.database_url())
        centre = Centre(config, store, store.secret(), smtp_send(config))
        server = unsubscribe_server("127.0.0.1:0", store.secret(), Ledger(store), centre=centre)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
            connection.request("GET", "/subscribe")
            response = connection.getresponse()
            assert response.status == 404 and "Sign-ups are closed" in response.read().decode()
        finally:
            server.shutdown()


def subscribed(site, email: str = "me@example.org", **fields: object) -> tuple[Browser, str]:
    """A visitor who signed up and confirmed: their browser and manage page path."""
    visitor = site.browser()
    count = len(site.smtp.handler.received)
    assert visitor.subscribe(email, **fields)[0] == 200
    site.wait_mails(count + 1)
    path = link_in(site.mails(email)[-1], "confirm")
    status, html = visitor.post(path, visitor.form(path))
    assert status == 200, html
    manage = re.search(r'href="https://digest\.example\.org(/manage/[A-Za-z0-9_~-]+)"', html)
    assert manage
    return visitor, manage.group(1)


def test_the_manage_page_edits_settings_and_a_yaml_reload_never_undoes_them(site):
    from digest.deliver import roster

    visitor, manage = subscribed(site)
    status, html = visitor.get(manage)
    assert status == 200 and "me@example.org" in html and 'value="Language models" checked' in html
    fields = {**visitor.form(manage), "action": "save", "preset": "Robotics", "topic_name_1": "Graphs",
              "topic_keywords_1": "graph neural network", "topic_description_1": "Learning on graphs.",
              "topic_sensitivity_1": "2", "schedule_kind": "weekly", "schedule_day": "fri",
              "schedule_time": "18:00", "timezone": "Asia/Tokyo", "max_papers": "7"}
    status, _ = visitor.post(manage, fields)
    assert status == 303
    row = Directory(site.store).get(["me@example.org"])["me@example.org"]
    assert (row.schedule, row.timezone, row.origin) == ("weekly fri 18:00", "Asia/Tokyo", "self")
    assert '"max_papers":7' in row.profile and "Graphs" in row.profile and "Language models" not in row.profile
    assert '"sensitivity":2' in row.profile
    assert '<option value="2" selected>' in visitor.get(manage)[1]  # shown as saved
    # the YAML's own subscriber edits on the web: their row is theirs from then on
    _, page = visitor.get(manage)
    yaml_manage = site.centre.manage_url("yaml@example.org").split("digest.example.org", 1)[1]
    other = site.browser()
    status, _ = other.post(yaml_manage, {**other.form(yaml_manage), "action": "save", "preset": "Robotics",
                                         "schedule_kind": "daily", "schedule_time": "06:00", "timezone": "UTC",
                                         "max_papers": "3"})
    assert status == 303
    site.centre.config._source_sha256 = "changed"  # as if the file were edited and reloaded
    synced = roster.sync(site.centre.config, Directory(site.store), site.clock.now)
    assert synced.shadowed == ("yaml@example.org",)
    row = Directory(site.store).get(["yaml@example.org"])["yaml@example.org"]
    assert row.origin == "self" and row.schedule == "daily 06:00"


def test_saving_the_manage_page_keeps_what_the_form_does_not_show(site):
    """A topic set by the list (an import, the file) with excludes, categories, authors or an
    upvote floor: the manage page says so at the topic, and a save keeps them while the topic
    keeps its name (the form has no field for them: a save dropped them, and a topic of
    categories alone could not be saved at all)."""
    from digest.subscribe.admin import SubscriberAdmin

    topics = [{"name": "Vision", "keywords": ["diffusion"], "exclude": ["survey"], "categories": ["cs.CV"],
               "authors": ["Tri Dao"], "min_upvotes": 3},
              {"name": "Robots", "categories": ["cs.RO"]},
              {"name": "Renamed", "keywords": ["graph"], "exclude": ["survey"]}]
    SubscriberAdmin(site.centre.config, site.store, site.clock).add(Subscriber(email="lab@example.org", topics=topics))
    manage = site.centre.manage_url("lab@example.org").split("digest.example.org", 1)[1]
    visitor = site.browser()
    status, html = visitor.get(manage)
    assert status == 200 and "Also: not when it says survey; in cs.CV; by Tri Dao; at least 3 upvotes" in html
    assert "Also: in cs.RO" in html
    status, _ = visitor.post(manage, {**visitor.form(manage), "action": "save",
                                      "topic_name_1": "Vision", "topic_keywords_1": "diffusion, video",
                                      "topic_name_2": "Robots",
                                      "topic_name_3": "Graphs", "topic_keywords_3": "graph",
                                      "schedule_kind": "daily", "schedule_time": "06:00", "timezone": "UTC",
                                      "max_papers": "9"})
    assert status == 303
    row = Directory(site.store).get(["lab@example.org"])["lab@example.org"]
    saved = {t["name"]: t for t in json.loads(row.profile)["topics"]}
    assert saved["Vision"] == {"name": "Vision", "keywords": ["diffusion", "video"], "exclude": ["survey"],
                               "categories": ["cs.CV"], "authors": ["Tri Dao"], "min_upvotes": 3}
    assert saved["Robots"] == {"name": "Robots", "categories": ["cs.RO"]}
    assert saved["Graphs"] == {"name": "Graphs", "keywords": ["graph"]}  # renamed: a new topic, as the page said


def test_preview_without_saving_and_invalid_edits_change_nothing(site):
    visitor, manage = subscribed(site)
    before = Directory(site.store).get(["me@example.org"])["me@example.org"].profile
    status, html = visitor.post(manage, {**visitor.form(manage), "action": "preview", "topic_name_1": "X",
                                         "topic_keywords_1": "transformer", "schedule_kind": "daily",
                                         "schedule_time": "07:30", "timezone": "UTC", "max_papers": "5"})
    assert status == 200 and "not saved yet" in html
    status, html = visitor.post(manage, {**visitor.form(manage), "action": "save", "topic_name_1": "X",
                                         "topic_keywords_1": "k" * 300, "schedule_kind": "daily",
                                         "schedule_time": "07:30", "timezone": "Mars/Base", "max_papers": "5"})
    assert status == 400 and 'id="timezone-error"' in html and 'id="topic_keywords_1-error"' in html
    assert Directory(site.store).get(["me@example.org"])["me@example.org"].profile == before


def test_pause_unsubscribe_resubscribe_export_and_delete(site):
    import json

    visitor, manage = subscribed(site)
    today = site.clock.now.astimezone(ZoneInfo("Europe/Berlin")).date()
    for bad in [today, today - timedelta(days=1), today + timedelta(days=400)]:
        assert visitor.post(manage, {**visitor.form(manage), "action": "pause", "until": bad.isoformat()})[0] == 400
    until = today + timedelta(days=8)
    assert visitor.post(manage, {**visitor.form(manage), "action": "pause", "until": until.isoformat()})[0] == 303
    _, html = visitor.get(manage + "?done=paused")
    assert f"paused until {until}" in html and "Resume now" in html
    assert visitor.post(manage, {**visitor.form(manage), "action": "resume"})[0] == 303
    assert "paused_until" not in Directory(site.store).get(["me@example.org"])["me@example.org"].profile
    assert visitor.post(manage, {**visitor.form(manage), "action": "unsubscribe"})[0] == 303
    assert not Ledger(site.store).state("me@example.org").active
    assert visitor.post(manage, {**visitor.form(manage), "action": "resubscribe"})[0] == 303
    assert Ledger(site.store).state("me@example.org").active
    status, body = visitor.get(manage + "/export")
    data = json.loads(body)
    assert status == 200 and data["email"] == "me@example.org" and data["settings"]["timezone"] == "Europe/Berlin"
    assert visitor.post(manage + "/delete", {})[0] == 403  # no CSRF field
    status, html = visitor.post(manage + "/delete", visitor.form(manage + "/delete"))
    assert status == 200 and "deleted" in html.lower()
    assert Directory(site.store).get(["me@example.org"]) == {}
    assert visitor.get(manage)[0] == 400  # the link is dead
    assert Ledger(site.store).state("me@example.org").active  # no state kept (a new sign-up starts afresh)
    # An old digest's unsubscribe link, one-click or by hand, writes the address back nowhere
    old = f"/unsubscribe/{unsubscribe_token(site.secret, 'me@example.org')}"
    status, html = visitor.post(old, {"List-Unsubscribe": "One-Click"})
    assert status == 200 and "is not subscribed" in html
    assert visitor.post(old, {"action": "resubscribe"})[1].count("is not subscribed") == 1
    assert "is not subscribed" in visitor.get(old)[1]
    states = site.store.read(lambda conn: conn.scalar(sa.select(sa.func.count()).select_from(subscriber_state)))
    assert states == 0 and Directory(site.store).get(["me@example.org"]) == {}


def test_the_live_preview_answers_for_the_values_being_edited(site):
    visitor, manage = subscribed(site)
    status, html = visitor.get(manage + "/preview?topic_name_1=Z&topic_keywords_1=zzzqqq&schedule_kind=daily"
                               "&schedule_time=07:30&timezone=UTC&max_papers=5")
    assert status == 200 and "no papers" in html
    status, html = visitor.get(manage + "/preview?topic_name_1=Z&topic_keywords_1=" + "k" * 200)
    assert status == 200 and "Fix these" in html
    assert site.browser().get("/manage/forged/preview")[0] == 404


def test_validate_says_what_open_sign_ups_still_need(tmp_path):
    from digest.checks import check_setup

    path = write(tmp_path, 25, ["a@example.org"], state=fresh_database(tmp_path), extra="signups:\n  open: true\n")
    found = [str(f.problem) for f in check_setup(load_config(path))]
    assert any("signups.open: nothing serves the sign-up page: set `listen:`" in f for f in found), found
    path.write_text(path.read_text().replace("base_url: https://digest.example.org\n", ""))
    found = [(str(f.problem), f.fatal) for f in check_setup(load_config(path))]
    assert any("sign-ups need `base_url`" in text and fatal for text, fatal in found), found


def test_an_edited_preset_reaches_everyone_who_picked_it_and_a_removed_one_stays_theirs(site):
    from digest.config import Topic
    from digest.deliver import roster

    subscribed(site, "one@example.org", preset=["Language models", "Robotics"])
    directory = Directory(site.store)
    assert roster.refresh_presets(site.centre.config, directory, site.clock.now) == 0  # nothing changed
    config = site.centre.config.model_copy(update={"presets": [
        Topic(name="Language models", keywords=["LLM", "foundation model"])]})
    assert roster.refresh_presets(config, directory, site.clock.now) == 1
    topics = {t.name: t for t in roster.subscriber(directory.get(["one@example.org"])["one@example.org"]).topics}
    assert topics["Language models"].keywords == ["LLM", "foundation model"] and topics["Language models"].preset
    assert topics["Robotics"].keywords == ["robot", "manipulation"] and topics["Robotics"].preset is None
    assert roster.refresh_presets(config, directory, site.clock.now) == 0  # once per change of the catalogue


def test_an_oversized_sign_up_is_refused_unread(site):
    visitor = site.browser()
    status, _ = visitor.subscribe("big@example.org", topic_name_1="Big", topic_description_1="x" * 100_000)
    assert status == 413
    assert SignUpStore(site.store).mails(site.clock.now - timedelta(days=1)) == 0


def test_validate_compiles_the_notice_templates_of_a_templates_folder(tmp_path):
    from digest.checks import check_setup

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notice.txt.j2").write_text("{{ link }\n", encoding="utf-8")  # a typo
    path = write(tmp_path, 25, ["a@example.org"], state=fresh_database(tmp_path), extra="templates: mine\n")
    found = [(str(f.problem), f.fatal) for f in check_setup(load_config(path))]
    assert any("notice.txt.j2" in text and fatal for text, fatal in found), found
