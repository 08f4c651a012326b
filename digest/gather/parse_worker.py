"""Parsing a source's document in a process of its own, with a deadline and a memory limit.

A hostile feed can make a parser work for minutes (feedparser's strict parser is quadratic in
the attributes of one element: 100,000 of them take over 400 s) or eat the machine's memory.
In a child process such a parse can be abandoned: killed at the source's deadline, refused
memory past the limit, stopped at once on SIGTERM, and never holding up anything else. The
children are forked from a small server process started once (multiprocessing's
"forkserver"), so a parse costs a fork, not a new interpreter, and no lock of the daemon's
threads is ever copied into a child.
"""

from __future__ import annotations

import multiprocessing
import resource
import threading
import time
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from ..errors import FetchError, ParseError, SourceError
from ..models import Listing
from .adapters import adapter

MEMORY_LIMIT = 2 << 30  # bytes of address space for one parse
_POLL = 0.1  # seconds between looks at the stop signal

_context: Any = None
_context_lock = threading.Lock()


def _forkserver() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["digest.gather.adapters"])
        return _context


def _parse_in_child(conn: Connection, source: Any, body: bytes, now: datetime, memory: int) -> None:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ValueError, OSError):
        pass  # a lower hard limit already applies
    try:
        conn.send(("ok", adapter(source).parse(source, body, now)))
    except SourceError as exc:
        conn.send(("parse", (exc.message.removeprefix(f"{source.name}: "), exc.hint)))
    except MemoryError:
        conn.send(("memory", None))
    except RecursionError:
        conn.send(("parse", ("the document is nested too deeply to read", "")))
    except BaseException as exc:  # noqa: BLE001 - reported, as the parent reports any adapter's bug
        conn.send(("bug", f"{exc.__class__.__name__}: {exc}"))
    finally:
        conn.close()


def parse_isolated(source: Any, body: bytes, now: datetime, *, deadline: float,
                   stop: threading.Event | None = None, memory: int = MEMORY_LIMIT) -> Listing:
    """The source's Listing, parsed in a child process; ParseError past the deadline (the child
    is killed) or the memory limit, FetchError when stopped."""
    context = _forkserver()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_parse_in_child, args=(send, source, body, now, memory),
                            name=f"parse {source.name}", daemon=True)
    child.start()
    send.close()
    try:
        while not receive.poll(_POLL):
            if stop is not None and stop.is_set():
                raise FetchError(source.name, "stopped")
            if time.monotonic() > deadline:
                raise ParseError(source.name, "reading the document took longer than the source's deadline; "
                                 "abandoned", hint="a hostile or broken feed; raise `deadline` if it is just large")
            if not child.is_alive() and not receive.poll(0):
                raise ParseError(source.name, f"the parser stopped without an answer (exit code {child.exitcode})",
                                 hint="a document that takes more memory to read than it should")
        try:
            kind, value = receive.recv()
        except EOFError:
            raise ParseError(source.name, "the parser stopped without an answer") from None
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
    if kind == "ok":
        return value
    if kind == "parse":
        message, hint = value
        raise ParseError(source.name, message, hint=hint)
    if kind == "memory":
        raise ParseError(source.name, f"reading the document needed more than {memory >> 20:,} MB; abandoned",
                         hint="a hostile or broken feed")
    raise RuntimeError(value)  # an adapter's bug: reported as one by gather
