"""A real SMTP server on loopback (aiosmtpd) whose answers a test scripts per recipient."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections import defaultdict
from email.message import EmailMessage

from digest.demo import LoopbackController


class ScriptedHandler:
    """Accepts everything, except what `script` says: recipient -> answers to use in turn,
    each an SMTP reply ("550 No such user"), "drop" (close the connection at the end of
    DATA) or "stall N" (sleep N seconds before answering)."""

    def __init__(self) -> None:
        self.script: dict[str, list[str]] = defaultdict(list)
        self.received: list[EmailMessage] = []
        self.accepted_at: list[float] = []  # time.monotonic() of each message accepted, in turn
        self.delay = 0.0
        self.pipelining = True  # advertised, as postfix and most servers do (aiosmtpd reads commands in turn)
        self.peers: set[object] = set()  # client (host, port): one per connection
        self.lock = threading.Lock()
        # A gate: with hold_after = N, the message after the N-th waits at the end of DATA
        # (`holding` is set) until `release` is set: a test can act while a message is in flight.
        self.hold_after: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def _next(self, recipient: str) -> str | None:
        with self.lock:
            answers = self.script.get(recipient.lower())
            return answers.pop(0) if answers else None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802, ANN001
        with self.lock:
            self.peers.add(session.peer)
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802, ANN001
        answer = self._next(address)
        if answer and answer[0] in "45":
            return answer
        if answer:  # drop / stall apply at DATA
            with self.lock:
                self.script[address.lower()].insert(0, answer)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001
        answer = self._next(envelope.rcpt_tos[0]) if envelope.rcpt_tos else None
        if answer == "drop":
            session.transport.close() if hasattr(session, "transport") and session.transport else server.transport.close()
            return "421 closing"
        if answer and answer.startswith("stall"):
            await asyncio.sleep(float(answer.split()[1]))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hold_after is not None and len(self.received) >= self.hold_after and not self.release.is_set():
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(message)
            self.accepted_at.append(time.monotonic())
        return "250 Message accepted"

    def to(self, recipient: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if recipient.lower() in str(m["To"]).lower()]


class SmtpServer:
    def __init__(self, **server_options) -> None:  # aiosmtpd's: tls_context, ssl_context, authenticator…
        self.handler = ScriptedHandler()
        self.controller = LoopbackController(self.handler, **server_options)
        self.port = self.controller.port

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.handler.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
