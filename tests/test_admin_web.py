"""The admin page (/admin) on its real server (uvicorn on loopback), with the SMTP server
capturing the mail: off without DIGEST_ADMIN_PASSWORD, basic auth and its limit on wrong
passwords, the list (every origin and the pending sign-ups, search, state filter, pages), and
its buttons: suspend, resume, resend a confirmation; forms without the CSRF field refused."""

from __future__ import annotations

import base64
import http.client
import re
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest

from digest.deliver import roster
from digest.store.directory import Directory
from digest.store.ledger import Ledger
from digest.store.overview import Overview
from digest.web.admin import FAILURES_PER_HOUR

from .test_centre import Browser, link_in, subscribed
from .test_centre import site as centre_site  # noqa: F401 - the fixture, named so here

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def password(monkeypatch):
    monkeypatch.setenv("DIGEST_ADMIN_PASSWORD", PASSWORD)


@pytest.fixture
def admin_site(password, centre_site):  # noqa: F811 - the password in the environment before the app is made
    centre_site.clock.now = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)  # the dates below
    return centre_site


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class Admin(Browser):
    """A browser that sends the admin's credentials (as one does once they were typed in)."""

    def __init__(self, base: str, secret: str = PASSWORD, user: str = "admin") -> None:
        super().__init__(base)
        self.authorization = basic(user, secret)
        self.token: str | None = None  # the forms' CSRF field, as last seen (the same while the cookie is)

    def _open(self, request):  # noqa: ANN001, ANN202
        request.add_header("Authorization", self.authorization)
        try:
            with self.opener.open(request, timeout=10) as response:
                self.location, html = response.headers["location"], response.read().decode()
                if found := re.search(r'<input type="hidden" name="csrf" value="([^"]+)"', html):
                    self.token = found.group(1)
                return response.status, html
        except urllib.error.HTTPError as exc:
            self.location = exc.headers["location"]
            return exc.code, exc.read().decode()

    def listed(self, query: str = "") -> tuple[dict[str, dict[str, str]], str]:
        status, html = self.get("/admin" + query)
        assert status == 200, html
        return rows(html), html

    def act(self, action: str, query: str = "", **fields: str) -> tuple[int, str]:
        """Press a row's button on the list at `query`, with the CSRF field its forms carry."""
        if self.token is None:
            self.get("/admin")
        return self.post("/admin" + query, {"csrf": self.token, "action": action, **fields})


def csrf_of(html: str) -> str:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def rows(html: str) -> dict[str, dict[str, str]]:
    """The table's rows by address: origin, state, and the text of the other cells."""
    found = {}
    for email, origin, state, rest in re.findall(
            r'<tr>\n<th scope="row">([^<]+)</th>\n<td>([^<]+)</td>\n<td><span class="state state-(\w+)">\w+</span>'
            r"(.*?)</tr>", html, re.S):
        cells = [re.sub(r"<[^>]+>", " ", cell).split() for cell in re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + rest, re.S)]
        found[email] = {"origin": origin, "state": state, "details": " ".join(cells[0]),
                        "last": " ".join(cells[1]), "sent": " ".join(cells[2]), "failures": " ".join(cells[3]),
                        "action": " ".join(cells[4])}
    return found


def raw(site, method: str, path: str, headers: dict | None = None) -> tuple[int, dict[str, str], str]:
    """One request without a cookie jar, its headers as they came."""
    host, port = site.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def pending_signup(site, email: str = "pending@example.org") -> str:
    """A visitor who signed up and did not confirm: the link they were mailed."""
    count = len(site.smtp.handler.received)
    assert site.browser().subscribe(email)[0] == 200
    site.wait_mails(count + 1)
    return link_in(site.mails(email)[-1], "confirm")


# -- access


@pytest.fixture
def no_password(monkeypatch):
    monkeypatch.delenv("DIGEST_ADMIN_PASSWORD", raising=False)


def test_the_admin_pages_are_off_without_the_password_variable(no_password, centre_site):  # noqa: F811
    site = centre_site
    status, _, html = raw(site, "GET", "/admin")
    assert status == 404 and "DIGEST_ADMIN_PASSWORD" in html
    status, _, html = raw(site, "GET", "/admin", {"Authorization": basic("admin", "")})
    assert status == 404 and "DIGEST_ADMIN_PASSWORD" in html
    assert raw(site, "POST", "/admin", {"Authorization": basic("admin", "anything")})[0] == 404


def test_401_without_or_with_a_wrong_password_and_the_page_with_it(admin_site):
    for headers in ({}, {"Authorization": basic("admin", "wrong")}, {"Authorization": basic("admin", PASSWORD[:-1])},
                    {"Authorization": "Basic not-base64!"}, {"Authorization": "Bearer " + PASSWORD},
                    {"Authorization": basic("admin", "")}):
        status, headers_back, html = raw(admin_site, "GET", "/admin", headers)
        assert status == 401, headers
        assert headers_back["www-authenticate"] == 'Basic realm="paper digest admin"'
        assert "yaml@example.org" not in html
        assert raw(admin_site, "POST", "/admin", headers)[0] == 401
    for user in ("admin", "anyone", ""):  # any user name: the password is the secret
        status, headers_back, html = raw(admin_site, "GET", "/admin", {"Authorization": basic(user, PASSWORD)})
        assert status == 200 and "yaml@example.org" in html
    # the same security headers as every page
    assert "frame-ancestors 'none'" in headers_back["content-security-policy"]
    assert headers_back["cache-control"] == "no-store" and headers_back["x-frame-options"] == "DENY"


def test_a_client_guessing_passwords_gets_429_even_for_the_right_one(admin_site):
    for n in range(FAILURES_PER_HOUR):
        assert raw(admin_site, "GET", "/admin", {"Authorization": basic("admin", f"guess{n}")})[0] == 401
    status, headers, _ = raw(admin_site, "GET", "/admin", {"Authorization": basic("admin", "one more")})
    assert status == 429 and 3000 < int(headers["retry-after"]) <= 3600
    status, headers, html = raw(admin_site, "GET", "/admin", {"Authorization": basic("admin", PASSWORD)})
    assert status == 429 and "yaml@example.org" not in html  # the right password tells nothing now
    assert raw(admin_site, "GET", "/admin")[0] == 429
    # another client (as the proxy on this machine says: uvicorn trusts X-Forwarded-For from loopback)
    status, _, html = raw(admin_site, "GET", "/admin", {"Authorization": basic("admin", PASSWORD),
                                                        "X-Forwarded-For": "203.0.113.7"})
    assert status == 200 and "yaml@example.org" in html


def test_requests_without_credentials_are_not_counted_as_guesses(admin_site):
    for _ in range(FAILURES_PER_HOUR + 5):  # a browser's first request to each page has none
        assert raw(admin_site, "GET", "/admin")[0] == 401
    assert raw(admin_site, "GET", "/admin", {"Authorization": basic("admin", PASSWORD)})[0] == 200


# -- the list


def test_the_list_shows_every_origin_and_pending_sign_ups_with_their_state(admin_site):
    site = admin_site
    subscribed(site, "Self@Example.org")
    pending_signup(site)
    ledger = Ledger(site.store)
    now = site.clock.now
    sent, _ = ledger.record("yaml@example.org", "2026-06-11", "<a@x>", ["p1"], now - timedelta(days=1))
    ledger.sent(sent, now - timedelta(days=1))
    refused, _ = ledger.record("yaml@example.org", "2026-06-12", "<b@x>", ["p2"], now)
    ledger.failed(refused, "550 no such user", now, suspend_after=3)
    listed, html = Admin(site.base).listed()
    assert set(listed) == {"yaml@example.org", "Self@example.org", "pending@example.org"}
    assert listed["yaml@example.org"]["origin"] == "config" and listed["yaml@example.org"]["state"] == "active"
    assert listed["yaml@example.org"]["last"] == "2026-06-12 · failed 2026-06-12 09:00 UTC"
    assert listed["yaml@example.org"]["sent"] == "1" and listed["yaml@example.org"]["failures"] == "1"
    assert listed["Self@example.org"]["origin"] == "self" and listed["Self@example.org"]["state"] == "active"
    assert listed["Self@example.org"]["last"] == "—" and listed["Self@example.org"]["sent"] == "0"
    assert listed["pending@example.org"]["origin"] == "self" and listed["pending@example.org"]["state"] == "pending"
    assert "signed up 2026-06-12 09:00 UTC" in listed["pending@example.org"]["details"]
    assert "Resend confirmation" in listed["pending@example.org"]["action"]
    assert "Suspend" in listed["yaml@example.org"]["action"]
    counts = dict(re.findall(r"(\w+) <b>(\d+)</b></a>", html))
    assert counts == {"All": "3", "Pending": "1", "Active": "2", "Paused": "0", "Suspended": "0", "Unsubscribed": "0"}


def test_search_the_state_filter_and_pages(admin_site):
    site = admin_site
    subscribed(site, "me@example.org")
    pending_signup(site)
    now = site.clock.now
    visitor_manage = site.centre.manage_url("me@example.org").split("digest.example.org", 1)[1]
    visitor = site.browser()
    assert visitor.post(visitor_manage, {**visitor.form(visitor_manage), "action": "pause",
                                         "until": "2026-06-20"})[0] == 303
    Ledger(site.store).unsubscribe("yaml@example.org", now)
    admin = Admin(site.base)
    assert set(admin.listed("?q=YAML")[0]) == {"yaml@example.org"}  # any case
    assert set(admin.listed("?q=example.org")[0]) == {"yaml@example.org", "me@example.org", "pending@example.org"}
    assert admin.listed("?q=%25")[0] == {} and admin.listed("?q=_")[0] == {}  # LIKE's wildcards are plain characters
    listed, html = admin.listed("?state=pending")
    assert set(listed) == {"pending@example.org"}
    assert '<option value="pending" selected>' in html
    assert {e: r["state"] for e, r in admin.listed("?state=paused")[0].items()} == {"me@example.org": "paused"}
    assert set(admin.listed("?state=unsubscribed")[0]) == {"yaml@example.org"}
    assert admin.listed("?state=active")[0] == {}
    assert len(admin.listed("?state=nonsense")[0]) == 3  # an unknown state: no filter
    assert admin.listed("?q=yaml&state=pending")[0] == {}
    _, html = admin.listed("?q=me%40")
    assert dict(re.findall(r"(\w+) <b>(\d+)</b></a>", html))["Paused"] == "1"  # counts of the search
    # 150 more, from `digest subscribers add`: 100 a page
    from digest.config import Subscriber
    from digest.subscribe.admin import SubscriberAdmin

    people = SubscriberAdmin(site.centre.config, site.store, clock=site.clock)
    people._put([Subscriber.model_validate({"email": f"bulk{n:03d}@example.net", "topics": [
        {"name": "LLMs", "keywords": ["llm"]}]}) for n in range(150)])
    first, html = admin.listed("?q=example.net")
    assert len(first) == 100 and "Page 1 of 2" in html and "bulk000@example.net" in first
    assert all(row["origin"] == "admin" for row in first.values())
    following = re.search(r'<a href="([^"]+)" rel="next">', html)
    assert following and following.group(1) == "?q=example.net&amp;page=2"
    second, html = admin.listed("?q=example.net&page=2")
    assert len(second) == 50 and "bulk149@example.net" in second and not set(first) & set(second)
    assert "Page 2 of 2" in html and 'rel="prev"' in html
    assert admin.listed("?q=example.net&page=3")[0] == {}
    assert admin.listed("?page=banana")[0]  # page 1
    assert admin.listed("?page=%C2%B2")[0] and admin.listed("?page=" + "9" * 5000)[0]  # "²", and past int(): page 1


def test_paused_until_is_their_day_in_their_time_zone(admin_site):
    site = admin_site
    directory = Directory(site.store)
    config = site.centre.config
    from digest.config import Subscriber

    def add(email: str, zone: str) -> None:
        subscriber = Subscriber.model_validate({"email": email, "timezone": zone, "paused_until": "2026-06-13",
                                                "topics": [{"name": "T", "keywords": ["t"]}]})
        directory.put("admin", [roster.as_wanted(config, subscriber)], site.clock.now,
                      lambda schedule, timezone: site.clock.now)

    add("kiritimati@example.org", "Pacific/Kiritimati")  # UTC+14
    add("utc@example.org", "UTC")
    overview = Overview(site.store)
    states = lambda now: {m.email: m.state for m in overview.page(now) if m.email != "yaml@example.org"}  # noqa: E731
    assert states(datetime(2026, 6, 12, 9, 59, tzinfo=UTC)) == {"kiritimati@example.org": "paused",
                                                                "utc@example.org": "paused"}
    assert states(datetime(2026, 6, 12, 10, 0, tzinfo=UTC)) == {"kiritimati@example.org": "active",
                                                                "utc@example.org": "paused"}
    assert states(datetime(2026, 6, 13, 0, 0, tzinfo=UTC)) == {"kiritimati@example.org": "active",
                                                               "utc@example.org": "active"}


# -- the buttons


def test_suspend_then_resume(admin_site):
    site = admin_site
    admin = Admin(site.base)
    ledger = Ledger(site.store)
    admin.listed()  # subscribers.yaml synced
    status, _ = admin.act("suspend", "?q=yaml&page=1", email="yaml@example.org")
    assert status == 303
    state = ledger.state("yaml@example.org")
    assert state.suspended_at == site.clock.now and state.suspended_reason == "suspended by the admin"
    listed, html = admin.listed("?q=yaml&done=suspended")
    assert listed["yaml@example.org"]["state"] == "suspended" and "Suspended: no digests" in html
    assert "suspended by the admin" in listed["yaml@example.org"]["details"]
    assert "Resume" in listed["yaml@example.org"]["action"]
    # again: the first suspension stays as it was
    site.clock.now += timedelta(hours=1)
    assert admin.act("suspend", email="yaml@example.org")[0] == 303
    assert ledger.state("yaml@example.org").suspended_at == site.clock.now - timedelta(hours=1)
    assert admin.act("resume", email="yaml@example.org")[0] == 303
    assert ledger.state("yaml@example.org").active
    assert admin.listed()[0]["yaml@example.org"]["state"] == "active"
    # an unsubscription is not the admin's to undo
    ledger.unsubscribe("yaml@example.org", site.clock.now)
    ledger.suspend("yaml@example.org", "bounces", site.clock.now)
    assert admin.act("resume", email="yaml@example.org")[0] == 303
    assert ledger.state("yaml@example.org").unsubscribed_at is not None
    assert admin.act("suspend", email="nobody@example.org")[0] == 303  # no such subscriber: nothing happens
    assert ledger.state("nobody@example.org") == ledger.state("other@example.org")


def test_the_redirect_goes_back_to_the_same_list(admin_site):
    admin = Admin(admin_site.base)
    assert admin.act("suspend", "?q=yaml&state=active&page=1", email="yaml@example.org")[0] == 303
    assert admin.location == "?q=yaml&state=active&done=suspended"
    assert admin.act("resume", "?q=yaml&state=suspended&page=2", email="yaml@example.org")[0] == 303
    assert admin.location == "?q=yaml&state=suspended&page=2&done=resumed"
    assert admin.act("resume", "?q=yaml&state=bogus&page=0", email="yaml@example.org")[0] == 303
    assert admin.location == "?q=yaml&done=not-suspended"
    assert admin.get("/admin" + admin.location)[0] == 200


def test_resend_confirmation_mails_a_new_working_link_within_the_caps(admin_site):
    site = admin_site
    old = pending_signup(site, "late@example.org")
    site.clock.now += timedelta(hours=49)  # the link has expired
    admin = Admin(site.base)
    listed, html = admin.listed("?state=pending")
    assert "link expired" in listed["late@example.org"]["details"]
    signup = re.search(r'name="signup" value="([^"]+)"', html)
    assert signup
    assert admin.act("resend", signup=signup.group(1))[0] == 303
    site.wait_mails(2)
    new = link_in(site.mails("late@example.org")[-1], "confirm")
    assert new != old
    visitor = site.browser()
    assert visitor.get(old)[0] == 400  # the old link no longer works
    status, html = visitor.post(new, visitor.form(new))
    assert status == 200 and "You are subscribed" in html
    assert Directory(site.store).get(["late@example.org"])["late@example.org"].origin == "self"
    listed, _ = admin.listed()
    assert listed["late@example.org"]["state"] == "active"
    # a confirmed sign-up is not pending: nothing more is sent
    assert admin.act("resend", signup=new.rsplit("/", 1)[1])[0] == 303
    assert len(site.mails("late@example.org")) == 2


def test_resend_confirmation_keeps_to_the_daily_cap_per_address(admin_site):
    site = admin_site
    pending_signup(site)  # the first of the three a day (per_address: 3)
    admin = Admin(site.base)
    for count in (2, 3):
        html = admin.listed()[1]
        signup = re.search(r'name="signup" value="([^"]+)"', html).group(1)
        assert admin.act("resend", signup=signup)[0] == 303
        site.wait_mails(count)
    working = link_in(site.mails("pending@example.org")[-1], "confirm")
    html = admin.listed()[1]
    signup = re.search(r'name="signup" value="([^"]+)"', html).group(1)
    assert admin.act("resend", signup=signup)[0] == 303 and admin.location == "?done=capped"
    assert "Not sent: the cap" in admin.listed("?done=capped")[1]
    assert len(site.mails("pending@example.org")) == 3
    visitor = site.browser()
    assert visitor.get(working)[0] == 200  # the last link mailed still works


def test_a_button_without_the_csrf_field_is_refused_and_changes_nothing(admin_site):
    site = admin_site
    pending_signup(site)
    admin = Admin(site.base)
    html = admin.listed()[1]
    signup = re.search(r'name="signup" value="([^"]+)"', html).group(1)
    token = csrf_of(html)
    ledger = Ledger(site.store)
    assert admin.post("/admin", {"action": "suspend", "email": "yaml@example.org"})[0] == 403
    assert admin.post("/admin", {"csrf": "0" * 64, "action": "suspend", "email": "yaml@example.org"})[0] == 403
    assert admin.post("/admin", {"csrf": token, "action": "suspend", "email": "yaml@example.org"},
                      {"Origin": "https://evil.example"})[0] == 403
    assert admin.post("/admin", {"action": "resend", "signup": signup})[0] == 403
    stranger = Admin(site.base)  # the right password and the field, but not this browser's cookie
    assert stranger.post("/admin", {"csrf": token, "action": "suspend", "email": "yaml@example.org"})[0] == 403
    assert ledger.state("yaml@example.org").active
    assert len(site.smtp.handler.received) == 1  # the sign-up's mail only
    assert admin.listed()[0]["pending@example.org"]["state"] == "pending"
    assert admin.post("/admin", {"csrf": token, "action": "delete-everyone"})[0] == 400


@pytest.mark.parametrize("width", [375, 1280])
def test_the_page_in_a_browser_without_javascript(admin_site, width):
    """Readable at phone and desktop widths (the table scrolls in its own box, the page never
    does), and its buttons work without script."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from .test_pages import CHROMIUM, check_readable

    if CHROMIUM is None:
        pytest.skip("needs chromium (apt-get install chromium; .ci/run does)")
    site = admin_site
    pending_signup(site, "a-rather-long-address.for-the-narrow-screen@subdomain.example.org")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=False,
                                          http_credentials={"username": "admin", "password": PASSWORD})
            page = context.new_page()
            page.goto(site.base + "/admin")
            assert "yaml@example.org" in page.inner_text("main")
            check_readable(page, "admin")
            with page.expect_navigation():
                page.click("button:has-text('Suspend')")
            assert "Suspended: no digests" in page.inner_text("main")
            assert Ledger(site.store).state("yaml@example.org").suspended_at is not None
            with page.expect_navigation():
                page.fill("#q", "YAML")
                page.select_option("#state", "suspended")
                page.click("button:has-text('Search')")
            assert "q=YAML&state=suspended" in page.url and "subdomain" not in page.inner_text("main")
            check_readable(page, "admin-suspended")
            context.close()
        finally:
            browser.close()


def test_a_resend_the_mail_server_refuses_changes_nothing(admin_site, monkeypatch):
    import smtplib

    site = admin_site
    old = pending_signup(site)
    admin = Admin(site.base)
    signup = re.search(r'name="signup" value="([^"]+)"', admin.listed()[1]).group(1)

    def refuse(message):  # noqa: ANN001, ANN202
        raise smtplib.SMTPRecipientsRefused({"pending@example.org": (550, b"no")})

    monkeypatch.setattr(site.centre, "send", refuse)
    assert admin.act("resend", signup=signup)[0] == 303 and admin.location == "?done=failed"
    assert "Not sent: the mail could not be handed" in admin.listed("?done=failed")[1]
    assert re.search(r'name="signup" value="([^"]+)"', admin.listed()[1]).group(1) == signup
    visitor = site.browser()
    status, html = visitor.post(old, visitor.form(old))  # the link mailed before still works
    assert status == 200 and "You are subscribed" in html
