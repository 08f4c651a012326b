"""Talking to the SMTP server: one connection reused for many messages, re-opened when the
server drops it; STARTTLS, implicit TLS or plain; AUTH; certificates checked by default.

The end of each message's DATA is sent separately, after a callback: the ledger marks the
digest `sending` at that moment, so that a run killed before it never leaves a digest the
server might have, and a run killed after it never sends that digest again.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import parseaddr

from ..config import Smtp
from ..errors import DigestError


class SmtpConfigError(DigestError):
    """The server cannot be used at all (unreachable, TLS, login refused): stop the batch."""


class TransientError(Exception):
    """Try again later: 4xx, a dropped connection, a time-out."""


class ConnectionLost(TransientError):
    """The connection dropped, timed out or could not be made."""


class PermanentError(Exception):
    """The server refused this recipient or message for good (5xx)."""


class Uncertain(Exception):
    """The end of the message went to the server and no final reply came (the connection was
    lost, or `smtp.data_timeout` passed): the server may have it. Never retried in the run."""


def _describe(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}"


class SmtpSender:
    """One connection; `send` opens it when needed."""

    def __init__(self, settings: Smtp, password: str | None = None, ca_file: str | None = None) -> None:
        self.settings = settings
        self.ca_file = ca_file or settings.ca_file
        self.password = password if password is not None else settings.password()
        self.connection: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.settings.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def open(self) -> smtplib.SMTP:
        s = self.settings
        greeting = min(s.greeting_timeout, s.timeout)
        greeted = False
        try:
            # Connect and wait for the 220 greeting briefly: a port that speaks something other
            # than SMTP (HTTP, IMAP's wrong side) stays silent, and that should fail in seconds.
            if s.security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=greeting, context=self._context())
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=greeting)
            greeted = True
            connection.timeout = s.timeout
            if connection.sock is not None:
                connection.sock.settimeout(s.timeout)
            if s.security == "starttls":
                try:
                    connection.starttls(context=self._context())
                except smtplib.SMTPNotSupportedError:
                    raise SmtpConfigError(f"SMTP server {self.where} does not offer STARTTLS",
                                          hint="port 465 wants smtp.security: ssl; a local relay without TLS "
                                               "smtp.security: none") from None
            if s.username:
                self._login(connection)
        except smtplib.SMTPConnectError as exc:
            raise ConnectionLost(f"SMTP server {self.where} refused the connection: {_describe(exc.smtp_code, exc.smtp_error)}") from None
        except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" not in str(exc):
                raise SmtpConfigError(f"{self.where} closed the connection without speaking SMTP ({exc})",
                                      hint="check smtp.port and smtp.security (465 is ssl, 587 starttls)") from None
            if greeted:
                raise ConnectionLost(f"SMTP server {self.where} stopped answering (after {s.timeout:g} s)") from None
            raise SmtpConfigError(f"no SMTP greeting from {self.where} within {greeting:g} s (unreachable, or not "
                                  "an SMTP port)", hint="check smtp.host, smtp.port (587 starttls, 465 ssl, 25 or "
                                                        "a relay's own) and smtp.security") from None
        except ssl.SSLError as exc:
            raise SmtpConfigError(f"TLS with SMTP server {self.where} failed: {exc.reason or exc}",
                                  hint="check smtp.security and smtp.port (465 is ssl, 587 starttls); "
                                       "smtp.verify_certificates: false only for a server you trust") from None
        except OSError as exc:
            raise SmtpConfigError(f"cannot reach SMTP server {self.where}: {exc}",
                                  hint="check smtp.host, smtp.port and smtp.security, and that the server runs") from None
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection = connection
        return connection

    def _login(self, connection: smtplib.SMTP) -> None:
        s = self.settings
        variable = s.password_env or "smtp.password_env"
        if self.password is None:
            raise SmtpConfigError(f"SMTP server {self.where} needs a password for {s.username!r}",
                                  hint=f"export {variable}=… (the variable smtp.password_env names)")
        try:
            connection.login(s.username or "", self.password)
        except smtplib.SMTPNotSupportedError:
            raise SmtpConfigError(f"SMTP server {self.where} offers no login (no AUTH)",
                                  hint="remove smtp.username (and smtp.password_env) for a relay that takes mail "
                                       "without one; or, if it wants a login after STARTTLS, set smtp.security: starttls") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SmtpConfigError(f"SMTP login to {self.where} as {s.username!r} refused: "
                                  f"{_describe(exc.smtp_code, exc.smtp_error)}",
                                  hint=f"check smtp.username and the password in ${variable}") from None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def send(self, message: EmailMessage | bytes, *, before_end: Callable[[], None] = lambda: None,
             envelope: tuple[str, str] | None = None) -> None:
        """Deliver one message (an EmailMessage, or the bytes of one with its `envelope`, the
        sender's and the recipient's addresses) to the server; TransientError or PermanentError if not."""
        if isinstance(message, bytes):
            if envelope is None:
                raise ValueError("the bytes of a message need their envelope")
            data, sender, recipients = message, envelope[0], [envelope[1]]
        else:
            sender = parseaddr(str(message["From"]))[1]
            recipients = [parseaddr(str(message["To"]))[1]]
            data = message.as_bytes()
        connection = self.connection or self.open()
        ended = False
        try:
            connection.ehlo_or_helo_if_needed()
            utf8 = _needs_utf8(sender, recipients)
            if connection.has_extn("pipelining") and not utf8:
                self._envelope_pipelined(connection, sender, recipients)
            else:
                code, reply = connection.mail(sender, ["SMTPUTF8"] if utf8 else [])
                self._check(code, reply, "MAIL FROM")
                for recipient in recipients:
                    code, reply = connection.rcpt(recipient)
                    self._check(code, reply, f"RCPT TO {recipient}")
                code, reply = connection.docmd("DATA")
                self._check_data(code, reply)
            body = dot_stuffed(data)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            try:
                before_end()
            except BaseException:  # the message is not to end (its claim was lost): the server drops it
                self._drop()
                raise
            ended = True  # from here the server may have the whole message
            connection.send(body + b".\r\n")  # one write: no Nagle stall with half a message on the wire
            if connection.sock is not None:  # RFC 5321 4.5.3.2.6: wait up to 10 minutes for this reply
                connection.sock.settimeout(self.settings.data_timeout)
            code, reply = connection.getreply()
            if connection.sock is not None:
                connection.sock.settimeout(self.settings.timeout)
            self._check(code, reply, "end of DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # socket.timeout is an OSError
            self._drop()
            reason = f"{exc or exc.__class__.__name__}"
            if ended:
                raise Uncertain(f"no reply from {self.where} after the end of the message ({reason}): "
                                "the server may have it") from None
            raise ConnectionLost(f"connection to {self.where} lost: {reason}") from None
        except (TransientError, PermanentError):
            self._reset()
            raise

    def _envelope_pipelined(self, connection: smtplib.SMTP, sender: str, recipients: list[str]) -> None:
        """MAIL, RCPT and DATA in one write, their replies read after (RFC 2920, which nearly
        every server offers): one round trip instead of three. With one recipient per message
        the server refuses DATA when MAIL or RCPT failed; should it answer 354 all the same,
        the connection is dropped, so nothing ends the message."""
        steps = [("MAIL FROM", f"MAIL FROM:{smtplib.quoteaddr(sender)}")]
        steps += [(f"RCPT TO {r}", f"RCPT TO:{smtplib.quoteaddr(r)}") for r in recipients]
        steps.append(("DATA", "DATA"))
        connection.send("".join(f"{command}\r\n" for _, command in steps))
        replies = [connection.getreply() for _ in steps]
        try:
            for (step, _), (code, reply) in zip(steps[:-1], replies):
                self._check(code, reply, step)
        except (TransientError, PermanentError):
            if replies[-1][0] == 354:
                self._drop()
            raise
        self._check_data(*replies[-1])

    def _check_data(self, code: int, reply: bytes) -> None:
        if code != 354:
            self._check(code, reply, "DATA")
            raise TransientError(f"DATA: {_describe(code, reply)}")

    def _check(self, code: int, reply: bytes, step: str) -> None:
        if 200 <= code < 400:
            return
        if code == 421:  # the server is closing the connection
            self._drop()
            raise ConnectionLost(f"{step}: {_describe(code, reply)}")
        if 400 <= code < 500 or code < 200:
            raise TransientError(f"{step}: {_describe(code, reply)}")
        raise PermanentError(f"{step}: {_describe(code, reply)}")

    def _reset(self) -> None:
        if self.connection is not None:
            try:
                self.connection.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except OSError:
                pass
        self.connection = None


def _needs_utf8(sender: str, recipients: list[str]) -> bool:
    return not all(a.isascii() for a in [sender, *recipients])


class RateLimit:
    """At most `per_second` messages a second across all connections."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            delay = self.next - now
            self.next = max(now, self.next) + self.interval
        if delay > 0:
            time.sleep(delay)


def dot_stuffed(data: bytes) -> bytes:
    """A line that starts with a dot gets another (RFC 5321 4.5.2): what smtplib's regular
    expression does, by two byte replacements (a twentieth of the time on a 75 KB message)."""
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed
