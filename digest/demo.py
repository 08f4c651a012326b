"""`digest demo`: the whole cycle offline. A capture SMTP server on 127.0.0.1, a temporary
state database, the sample feeds shipped in the package and three demo subscribers: fetch,
match, render, send; the received messages are written as .eml and .html files.

The samples are real: a Hugging Face /api/daily_papers response and an arXiv Atom listing,
captured from the services (real ids, authors, links), and the titles and abstracts of ~425
papers from captures of the Daily Papers page (no ids there: those link to an arXiv search)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller

from .config import load_config
from .deliver.send_run import Delivery, Outcome
from .errors import DigestError
from .gather.collect import gather
from .store.database import open_store

SAMPLES = Path(__file__).resolve().parent / "samples"

DEMO_SUBSCRIBERS = """
subscribers:
  - email: alice@example.org
    name: Alice
    timezone: Europe/Berlin
    trending: 3
    topics:
      - name: Efficient inference
        keywords: [KV cache, speculative decoding, quantization, sparse attention]
        exclude: [survey]
      - name: Scaling laws
        keywords: [scaling law]
  - email: bob@example.org
    name: Bob
    timezone: America/New_York
    max_per_topic: 5
    topics:
      - name: Alignment
        query: '(RLHF OR "preference optimization" OR DPO OR "reward model*") AND NOT title:survey'
      - name: Agents
        keywords: [LLM agent, agentic, web agent, tool use]
  - email: chen@example.org
    name: Chen
    timezone: Asia/Shanghai
    topics:
      - name: Long context
        keywords: [long context, context window, long-context]
"""


class CaptureHandler:
    """Keeps every message the server accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001 - aiosmtpd's API
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


class LoopbackController(Controller):
    """aiosmtpd's controller on a port of 127.0.0.1 bound once, here, and handed to the server:
    never a port picked, released and bound again (another process could take it between)."""

    def __init__(self, handler: object, **options: object) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        # server_hostname: without it aiosmtpd calls socket.getfqdn() for every connection, inside
        # its event loop (a resolver that waits stalls every greeting behind it).
        options.setdefault("server_hostname", "localhost")
        super().__init__(handler, hostname="127.0.0.1", port=self.socket.getsockname()[1], **options)

    def _create_server(self):  # type: ignore[no-untyped-def]
        return self.loop.create_server(self._factory_invoker, sock=self.socket, ssl=self.ssl_context)


@dataclass
class DemoResult:
    folder: Path
    outcomes: list[Outcome]
    files: list[Path] = field(default_factory=list)
    fetched: int = 0


def run_demo(folder: Path | None = None) -> DemoResult:
    folder = folder or Path(f"digest-demo-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    try:  # before any work: where the messages go, said first
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigestError(f"cannot write the demo's messages to {folder}: {exc.strerror or exc}",
                          hint="run it from a folder you can write to, or give one with --out") from None
    handler = CaptureHandler()
    controller = LoopbackController(handler)
    controller.start()
    port = controller.port
    try:
        with tempfile.TemporaryDirectory(prefix="digest-demo-state-") as work:
            config_path = Path(work) / "subscribers.yaml"
            sources = [
                {"name": "arxiv", "type": "arxiv", "format": "atom", "warn_stale": False,
                 "url": str(SAMPLES / "arxiv-atom-2025-08-20.xml")},
                {"name": "hf-trending", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers-2026-06-12.json")},
                {"name": "daily-papers-pages", "type": "feed", "url": str(SAMPLES / "daily-papers-pages.atom.xml")},
            ]
            config_path.write_text(
                'sender:\n  from: "Paper Digest <digest@example.org>"\n  reply_to: admin@example.org\n'
                f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n"
                "state: sqlite:///demo.db\nbase_url: https://digest.example.org\n"
                "defaults:\n  max_papers: 15\n  schedule: daily 07:30\n"
                "sources:\n" + "".join(f"  - {json.dumps(s)}\n" for s in sources) + DEMO_SUBSCRIBERS,
                encoding="utf-8")
            config = load_config(config_path)
            store = open_store(config)
            reports = gather(config, store)
            outcomes = Delivery(config, store).run()
            store.close()
        result = DemoResult(folder.resolve(), outcomes, fetched=sum(r.new for r in reports))
        for number, (recipients, raw) in enumerate(handler.messages, 1):
            name = f"{number:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', recipients[0]).strip('-')}"
            (folder / f"{name}.eml").write_bytes(raw)
            message = email.message_from_bytes(raw, policy=email.policy.default)
            html = message.get_body(("html",))
            (folder / f"{name}.html").write_text(html.get_content() if html else "", encoding="utf-8")
            result.files += [folder / f"{name}.eml", folder / f"{name}.html"]
        return result
    finally:
        controller.stop()
