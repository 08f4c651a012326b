"""SMTP security against a real server on loopback: STARTTLS and implicit TLS with a
certificate check, AUTH, a refused login, one connection for many messages, the rate limit."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given
from hypothesis import strategies as st

from digest.config import Smtp, load_config
from digest.deliver import Delivery
from digest.deliver.smtp import PermanentError, SmtpSender, TransientError
from digest.store import Ledger, Store

from .smtp_server import SmtpServer
from .test_deliver import fetched, setup  # noqa: F401 - the fixture

pytestmark = [pytest.mark.database, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")]
EMAILS = [f"reader{n}@example.org" for n in range(4)]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"digest" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself


def send(config_path: Path, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"DIGEST_TEST_PASSWORD": password} if password else {})}
    result = subprocess.run([sys.executable, "-m", "digest", "-c", str(config_path), "send"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in result.stderr
    return result


def test_starttls_auth_and_one_connection(tmp_path, fetched, certificate):  # noqa: F811
    options = {"tls_context": server_context(certificate), "require_starttls": True,
               "authenticator": authenticator, "auth_require_tls": True}
    with SmtpServer(**options) as server:
        smtp = (f"  username: digest\n  password_env: DIGEST_TEST_PASSWORD\n"
                f"  ca_file: {certificate[0]}\n")
        config = setup(tmp_path, fetched, server.port, EMAILS, smtp_extra=smtp, security="starttls")
        result = send(config, "s3cret")
        assert result.returncode == 0 and "4 sent" in result.stdout, result.stdout + result.stderr
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(EMAILS)
        assert len(server.handler.peers) == 1  # one connection for the whole batch


def test_certificates_are_checked_by_default(tmp_path, fetched, certificate):  # noqa: F811
    with SmtpServer(tls_context=server_context(certificate), require_starttls=True) as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:1], security="starttls")
        result = send(config)
        assert result.returncode == 1
        assert "TLS with SMTP server 127.0.0.1" in result.stderr and "smtp.verify_certificates" in result.stderr
        assert not server.handler.received
        trusting = setup(tmp_path, fetched, server.port, EMAILS[:1],
                         smtp_extra="  verify_certificates: false\n", security="starttls")
        assert "1 sent" in send(trusting).stdout


def test_implicit_tls(tmp_path, fetched, certificate):  # noqa: F811
    with SmtpServer(ssl_context=server_context(certificate)) as server:
        config = setup(tmp_path, fetched, server.port, EMAILS[:2],
                       smtp_extra=f"  ca_file: {certificate[0]}\n", security="ssl")
        result = send(config)
        assert "2 sent" in result.stdout, result.stdout + result.stderr


def test_refused_login_names_the_keys_and_loses_nothing(tmp_path, fetched, certificate):  # noqa: F811
    options = {"tls_context": server_context(certificate), "authenticator": authenticator, "auth_require_tls": True}
    with SmtpServer(**options) as server:
        smtp = (f"  username: digest\n  password_env: DIGEST_TEST_PASSWORD\n"
                f"  ca_file: {certificate[0]}\n")
        config = setup(tmp_path, fetched, server.port, EMAILS[:2], smtp_extra=smtp, security="starttls")
        result = send(config, "wrong")
        assert result.returncode == 1
        assert "SMTP login to 127.0.0.1" in result.stderr and "refused" in result.stderr
        assert "smtp.username" in result.stderr and "$DIGEST_TEST_PASSWORD" in result.stderr  # the actual variable
        assert "2 sent" in send(config, "s3cret").stdout


def test_rate_limit(tmp_path, fetched):  # noqa: F811
    with SmtpServer() as server:
        config_path = setup(tmp_path, fetched, server.port, EMAILS, smtp_extra="  rate_limit: 8\n")
        config = load_config(config_path)
        started = time.monotonic()
        outcomes = Delivery(config, Store(config.database_url())).run()
        assert [o.status for o in outcomes] == ["sent"] * 4
        assert time.monotonic() - started >= 3 / 8


def test_several_connections_each_digest_once(tmp_path, fetched):  # noqa: F811
    # The README: `connections` (default 1) parallel SMTP connections pace the batch.
    emails = [f"reader{n:02d}@example.org" for n in range(9)]
    with SmtpServer() as server:
        server.handler.delay = 0.3  # slow enough that one connection could not take them all at once
        config_path = setup(tmp_path, fetched, server.port, emails, smtp_extra="  connections: 3\n")
        config = load_config(config_path)
        outcomes = Delivery(config, Store(config.database_url())).run()
        assert sorted(o.status for o in outcomes) == ["sent"] * 9
        assert len(server.handler.peers) == 3  # three connections really opened, and no more
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)


def _until_ready(rendering, seconds: float = 60, count: int = 1) -> None:  # noqa: ANN001
    """Until `count` rendering processes are up (each starts in about a second)."""
    deadline = time.monotonic() + seconds
    while len(rendering.pids) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _a_digest_to_render(tmp_path, fetched):  # noqa: ANN001, ANN202, F811
    """A configuration, its store, reader1's subscriber and digest, and this process's Composer."""
    from datetime import UTC, datetime

    from digest.match.newly_seen import newly_seen
    from digest.render.compose import Composer

    config = load_config(setup(tmp_path, fetched, 2525, EMAILS))
    store = Store(config.database_url())
    reader = Delivery(config, store).select(["reader1@example.org"])[0]
    _, digests = newly_seen(config, store, [reader], datetime.now(UTC), ledger=None)
    return config, store, reader, list(digests)[0], Composer(config, secret=store.signing_secret())


def test_several_connections_render_in_processes_of_their_own(tmp_path, fetched, monkeypatch):  # noqa: F811
    """With several connections (and CPUs), a long send renders in processes of its own while
    this one sends (one process cannot keep eight relay connections busy), each digest asked for
    as it is claimed, ahead of its turn: every digest sent once, each rendered there."""
    from digest.deliver import send_run
    from digest.render import processes

    monkeypatch.setattr(send_run, "RENDER_PROCESSES_AFTER", 0)  # from the first digest, not the 200th
    monkeypatch.setattr(send_run, "processes_for", lambda connections: 1)  # on a one-CPU machine too
    ahead = processes.RenderProcesses.ahead
    asked = []

    def once_started(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - not this process meanwhile
        _until_ready(self)
        asked.append(ahead(self, *args, **kwargs))
        return asked[-1]

    monkeypatch.setattr(processes.RenderProcesses, "ahead", once_started)
    emails = [f"reader{n:02d}@example.org" for n in range(8)]
    with SmtpServer() as server:
        config_path = setup(tmp_path, fetched, server.port, emails, smtp_extra="  connections: 3\n")
        config = load_config(config_path)
        delivery = Delivery(config, Store(config.database_url()))
        outcomes = delivery.run()
        assert sorted(o.status for o in outcomes) == ["sent"] * 8
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)
        assert delivery.rendered_elsewhere == 8 and delivery.rendering is None  # and the processes stopped
        assert len(asked) == 8 and all(future.done() for future in asked)


def test_a_rendering_process_makes_this_ones_email_and_one_that_dies_leaves_it_to_this_one(tmp_path, fetched, caplog):  # noqa: F811
    import re
    import signal

    from digest.render.processes import RenderProcesses

    config, store, reader, digest, here = _a_digest_to_render(tmp_path, fetched)
    assert digest.papers
    rendering = RenderProcesses(config, store.signing_secret(), 1, here)
    key = "2026-01-01T07:00+00:00"
    boundary = re.compile(rb"=_digest_[0-9a-f]{24}")  # random in every message
    try:
        _until_ready(rendering)
        [child] = rendering.pids
        assert child != os.getpid()
        made = rendering.email(digest, reader, key=key, manage_generation=2)
        expected = here.email(digest, reader, key=key, manage_generation=2)
        assert rendering.rendered == 1
        assert boundary.sub(b"B", made.wire) == boundary.sub(b"B", expected.wire)
        assert (made.html, made.text, made.subject, made.envelope) == (expected.html, expected.text, expected.subject,
                                                                       expected.envelope)
        asked = rendering.ahead(digest, reader, key=key, manage_generation=2)  # asked now, collected when sent
        assert asked is not None
        early = rendering.email(digest, reader, key=key, manage_generation=2, asked=asked)
        assert boundary.sub(b"B", early.wire) == boundary.sub(b"B", expected.wire) and rendering.rendered == 2
        os.kill(child, signal.SIGKILL)
        asked = rendering.ahead(digest, reader, key=key, manage_generation=2)  # None, or never answered
        again = rendering.email(digest, reader, key=key, manage_generation=2, asked=asked)
        assert boundary.sub(b"B", again.wire) == boundary.sub(b"B", expected.wire)  # made here instead
        assert rendering.rendered == 2 and rendering.broken
        assert "rendering in this process from now on" in caplog.text
    finally:
        rendering.close()


def test_requests_asked_ahead_of_a_process_that_died_are_answered_by_another(tmp_path, fetched):  # noqa: F811
    """Two rendering processes, one killed: every digest asked ahead afterwards is answered
    (by the other, or here), each with its own e-mail; none waits for ever."""
    import signal

    from digest.render.processes import RenderProcesses

    config, store, reader, digest, here = _a_digest_to_render(tmp_path, fetched)
    rendering = RenderProcesses(config, store.signing_secret(), 2, here)
    try:
        _until_ready(rendering, count=2)
        os.kill(rendering.pids[0], signal.SIGKILL)
        keys = [f"2026-02-{n + 1:02d}T07:00+00:00" for n in range(12)]
        asked = [rendering.ahead(digest, reader, key=key) for key in keys]
        for key, future in zip(keys, asked):
            if future is not None:
                try:
                    future.result(timeout=30)
                except EOFError:
                    pass  # the killed one's: asked again below
            made = rendering.email(digest, reader, key=key, asked=future)
            expected = here.email(digest, reader, key=key)
            assert (made.subject, made.message["Message-ID"]) == (expected.subject, expected.message["Message-ID"])
        assert len(rendering.pids) == 1  # the killed one was let go, the other kept
    finally:
        rendering.close()


def test_closing_the_rendering_processes_ends_every_request_asked_ahead(tmp_path, fetched):  # noqa: F811
    """A run that stops with digests asked ahead and not sent closes its rendering processes at
    once: what was not written to them yet is dropped, every request ends (answered, or with
    EOFError), and a digest still to send is then rendered in this process."""
    from digest.render.processes import RenderProcesses

    config, store, reader, digest, here = _a_digest_to_render(tmp_path, fetched)
    rendering = RenderProcesses(config, store.signing_secret(), 1, here)
    _until_ready(rendering)
    asked = [rendering.ahead(digest, reader, key=f"2026-01-{n + 1:02d}T07:00+00:00") for n in range(30)]
    assert all(future is not None for future in asked)
    started = time.monotonic()
    rendering.close()
    assert time.monotonic() - started < 10
    assert all(future.done() for future in asked)
    assert all(isinstance(f.exception(), EOFError) or f.result().subject for f in asked)
    assert rendering.ahead(digest, reader) is None  # closed: nothing asked any more
    made = rendering.email(digest, reader, key="2026-01-01T07:00+00:00", asked=asked[-1])
    assert made.envelope[1] == "reader1@example.org" and here.email(digest, reader, key="2026-01-01T07:00+00:00").subject == made.subject


@pytest.mark.no_postgresql
@given(st.binary(max_size=200) | st.lists(st.sampled_from([b".", b"\r\n", b"\n", b"\r", b"a", b".."])).map(b"".join))
def test_dot_stuffing_is_smtplibs(data):
    from digest.deliver.smtp import dot_stuffed

    assert dot_stuffed(data) == smtplib._quote_periods(data)


def _message(to: str) -> bytes:
    return (f"From: digest@example.org\r\nTo: {to}\r\nSubject: test\r\nMessage-ID: <{to}.1@example.org>\r\n\r\n"
            ".a line that starts with a dot\r\n").encode()


def test_several_connections_stream_claims_and_retry_what_failed(tmp_path, fetched):  # noqa: F811
    """Four connections, claims of two digests each: the batches stream to the connections
    (the next claimed while the last goes out), a 451 comes back for the run's retry pass, a
    550 fails for good, and every other digest is sent once, recorded `sent`."""
    emails = [f"reader{n:02d}@example.org" for n in range(20)]
    with SmtpServer() as server:
        server.handler.delay = 0.05
        server.handler.script["reader03@example.org"] = ["451 4.3.0 busy"]  # once
        server.handler.script["reader11@example.org"] = ["550 5.1.1 no such user"] * 5
        config_path = setup(tmp_path, fetched, server.port, emails, extra="workers:\n  batch: 2\n",
                            smtp_extra="  connections: 4\n")
        config = load_config(config_path)
        outcomes = {o.subscriber: o.status for o in Delivery(config, Store(config.database_url())).run()}
        assert outcomes.pop("reader11@example.org") == "failed"
        assert set(outcomes.values()) == {"sent"} and len(outcomes) == 19
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(e for e in emails if "11" not in e)
        assert len(server.handler.peers) == 4
        states = Counter(e.state for e in Ledger(Store(config.database_url())).entries())
        assert states == Counter({"sent": 19, "failed": 1})


def test_several_connections_a_plan_that_fails_fails_the_run_and_sends_nothing(tmp_path, fetched, monkeypatch):  # noqa: F811
    """With several connections the plan is made in a thread of its own: its error still ends
    the run, in the run's thread, and nothing half-planned is sent."""
    from digest.errors import StoreError

    with SmtpServer() as server:
        config_path = setup(tmp_path, fetched, server.port, EMAILS, smtp_extra="  connections: 3\n")
        config = load_config(config_path)
        delivery = Delivery(config, Store(config.database_url()))

        def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise StoreError("state database: disk I/O error")

        monkeypatch.setattr(delivery, "plan", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            delivery.run()
        assert server.handler.received == []
        assert Ledger(Store(config.database_url())).entries() == []


@pytest.mark.no_postgresql
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_refusals_on_one_connection_with_and_without_pipelining(pipelining):
    """A 550 and a 451 for the envelope: each message's own error, and the connection goes on
    with the next message (the server's RSET left it clean), both ways of sending MAIL/RCPT/DATA."""
    with SmtpServer() as server:
        server.handler.pipelining = pipelining
        server.handler.script["gone@example.org"] = ["550 5.1.1 No such user"]
        server.handler.script["busy@example.org"] = ["451 4.3.0 Try later"]
        sender = SmtpSender(Smtp(host="127.0.0.1", port=server.port, security="none", timeout=5))
        with pytest.raises(PermanentError, match="RCPT TO gone@example.org: 550 5.1.1 No such user"):
            sender.send(_message("gone@example.org"), envelope=("digest@example.org", "gone@example.org"))
        with pytest.raises(TransientError, match="451 4.3.0 Try later"):
            sender.send(_message("busy@example.org"), envelope=("digest@example.org", "busy@example.org"))
        sender.send(_message("ok@example.org"), envelope=("digest@example.org", "ok@example.org"))
        sender.close()
        assert [str(m["To"]) for m in server.handler.received] == ["ok@example.org"]
        assert server.handler.received[0].get_content().startswith(".a line")  # the stuffed dot taken off
        assert len(server.handler.peers) == 1


class _ScriptedWire:
    """A server that speaks SMTP by hand, to reach what a well-behaved one never does: it
    answers nothing to MAIL, RCPT and DATA until all three have come (a client that waited for
    each reply would hang here), then gives `replies`, and records what the client sent next."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.after = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        connection.settimeout(5)
        reader = connection.makefile("rb")
        connection.sendall(b"220 wire ESMTP\r\n")
        reader.readline()  # EHLO
        connection.sendall(b"250-wire\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        commands = [reader.readline() for _ in range(3)]
        assert [c.split(b":")[0].split()[0] for c in commands] == [b"MAIL", b"RCPT", b"DATA"], commands
        connection.sendall(b"".join(self.replies))
        try:
            while chunk := connection.recv(65536):
                self.after += chunk
                if self.after.endswith(b".\r\n"):
                    connection.sendall(b"250 queued\r\n")
                elif chunk.upper().endswith(b"RSET\r\n"):
                    connection.sendall(b"250 ok\r\n")
                elif chunk.upper().endswith(b"QUIT\r\n"):  # answered (smtplib says "quit"): the client's close never waits out its timeout
                    connection.sendall(b"221 bye\r\n")
                    break
        except OSError:
            pass
        connection.close()


@pytest.mark.parametrize(("replies", "error", "ended"), [
    ([b"250 ok\r\n", b"250 ok\r\n", b"354 go on\r\n"], None, True),
    ([b"250 ok\r\n", b"550 5.1.1 no such user\r\n", b"554 no valid recipients\r\n"], PermanentError, False),
    # a server that says 354 although the one recipient was refused: nothing may end a message
    ([b"250 ok\r\n", b"550 5.1.1 no such user\r\n", b"354 go on\r\n"], PermanentError, False),
], ids=["accepted", "refused", "refused-yet-354"])
@pytest.mark.no_postgresql
def test_pipelined_envelope_is_one_round_trip(replies, error, ended):
    wire = _ScriptedWire(replies)
    sender = SmtpSender(Smtp(host="127.0.0.1", port=wire.port, security="none", timeout=5))
    if error:
        with pytest.raises(error, match="RCPT TO a@example.org: 550"):
            sender.send(_message("a@example.org"), envelope=("digest@example.org", "a@example.org"))
    else:
        sender.send(_message("a@example.org"), envelope=("digest@example.org", "a@example.org"))
    sender.close()
    wire.thread.join(timeout=10)
    assert (b"\r\n.\r\n" in wire.after) == ended, wire.after
    if replies[-1].startswith(b"354") and error:
        assert wire.after == b""  # dropped: not even a RSET into the open DATA
