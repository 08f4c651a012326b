"""Rendering in processes of their own, beside the threads that send.

With several SMTP connections one process is bound by its CPU, not by the relay: rendering a
digest (~3.5 ms of Python) holds the interpreter's lock while the other connections wait to
write theirs. `RenderProcesses` renders in other processes, each with a `Composer` of its own
made from the same configuration and secret, so their e-mails are the ones this process would
make (the same Message-ID, links and bytes, but for the MIME boundary, random in every message
anyway).

Each is `python -m digest.render.processes`, fed pickled digests on its standard input and
answering pickled e-mails on its standard output: not multiprocessing, whose "spawn" imports the
caller's main script again in the child (an embedding script without a `__main__` guard would
run there twice), and whose workers outlive a parent killed with -9; these read the end of their
input then, and stop.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from ..config import Config, Subscriber
from ..models import Digest, Paper
from .compose import Composer, Email
from .planned import decode, encode

log = logging.getLogger(__name__)

_SIZE = struct.Struct("!I")  # each message: its length, then its pickle


def processes_for(connections: int) -> int:
    """How many rendering processes a run with `connections` sends through: none with one
    connection (rendering and sending take turns anyway) or one CPU; else one per CPU but the
    sending process's, at most one per connection."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if connections < 2 or cpus < 2 else min(connections, cpus - 1)


class RenderProcesses:
    """`Composer.email` in `count` processes; in this one (`fallback`) while they start, and
    from the moment none is left."""

    def __init__(self, config: Config, secret: str, count: int, fallback: Composer) -> None:
        self.fallback = fallback
        self.broken: str | None = None
        self.rendered = 0  # e-mails the processes rendered
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._starting = count
        self._closed = False
        self._asked: queue.SimpleQueue[tuple[Future[Any], Digest, str | None, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None  # writes what `ahead` queued
        payload = pickle.dumps((config, secret), protocol=pickle.HIGHEST_PROTOCOL)
        for _ in range(count):  # each started (~1 s: imports) by a thread, while this process sends
            threading.Thread(target=self._start, args=(payload,), name="render-start", daemon=True).start()

    def _start(self, payload: bytes) -> None:
        try:
            child = _Child(payload)
        except (OSError, EOFError, pickle.PickleError) as exc:
            self._lost(None, f"could not start: {exc.__class__.__name__}: {exc}")
            return
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._children = [*self._children, child]  # a new list: read unlocked
                return
        child.stop()

    @property
    def ready(self) -> bool:
        return bool(self._children)

    @property
    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children]

    def ahead(self, digest: Digest, subscriber: Subscriber, *, key: str | None = None, to: str | None = None,
              manage_generation: int = 0, content: str | None = None) -> Future[Any] | None:
        """Ask a process for the e-mail now, to be collected by `email(..., asked=)` when it is
        to be sent: claimed digests are asked for as they are handed to the sending threads, so a
        process renders the next ones while the connections wait on the relay. None while none
        is up (the e-mail is then rendered when it is sent). `content`: the digest as the ledger
        keeps it (planned.encode's), when the caller has it. Never waits: the requests are
        written by a thread of their own (a pipe holds one or two digests with their papers, so
        writing a batch's waits for the process to render most of it)."""
        if not self._children:
            return None
        asked: Future[Any] = Future()
        with self._lock:
            if self._closed:
                return None
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_asked, name="render-ask", daemon=True)
                self._writer.start()
            self._asked.put((asked, digest, content, (subscriber, key, to, manage_generation)))
        return asked

    def _write_asked(self) -> None:
        """The requests `ahead` queued; one no process can take (none left) ends with
        EOFError, and its digest is rendered here."""
        while (item := self._asked.get()) is not None:
            asked, digest, content, rest = item
            if self._submit(digest, content, rest, asked) is None:
                asked.set_exception(EOFError("no rendering process"))

    def _submit(self, digest: Digest, content: str | None, rest: tuple[Any, ...],
                waiting: Future[Any] | None = None) -> Future[Any] | None:
        """The e-mail asked of the process with the fewest waiting (another, if writing to it
        fails); None when none is up or left. `content`: planned.encode's, if the caller has
        it (a tenth of the pickle's cost)."""
        while children := self._children:
            child = min(children, key=lambda c: len(c.pending))
            content = content or encode(digest)
            try:
                return child.submit(content, digest.papers, rest, waiting)
            except (OSError, EOFError, pickle.PickleError) as exc:
                self._lost(child, f"{exc.__class__.__name__}: {exc}")
        return None

    def email(self, digest: Digest, subscriber: Subscriber, *, key: str | None = None, to: str | None = None,
              manage_generation: int = 0, asked: Future[Any] | None = None) -> Email:
        """The e-mail: `asked` for (`ahead`), or asked for now; rendered in this process when
        no rendering process is there (or the one asked ended before answering)."""
        while True:
            if asked is None:
                asked = self._submit(digest, None, (subscriber, key, to, manage_generation))
                if asked is None:  # none yet (starting) or none left: this process renders
                    return self.fallback.email(digest, subscriber, key=key, to=to, manage_generation=manage_generation)
            try:
                made = asked.result()
            except (OSError, EOFError, pickle.PickleError):  # it ended before answering (the next write finds it gone)
                asked = None
                continue
            if isinstance(made, BaseException):
                raise made  # the template's error, as this process would have raised it
            with self._lock:
                self.rendered += 1
            return made  # type: ignore[no-any-return]

    def _lost(self, child: _Child | None, reason: str) -> None:
        with self._lock:
            if child is None:
                self._starting -= 1
            elif child in self._children:
                self._children = [c for c in self._children if c is not child]  # a new list: read unlocked
            else:
                return  # another thread found it gone first
            last = not self._children and self._starting == 0 and not self.broken  # none there, none to come
            if last:
                self.broken = reason
        if child is not None:
            child.stop()
        if last:
            log.warning("rendering in this process from now on: the rendering processes stopped (%s)", reason)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._children = self._children, []
            writer, self._writer = self._writer, None
        if writer is not None:  # what it has not written yet is not wanted any more (a stopped run)
            while True:
                try:
                    item = self._asked.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].set_exception(EOFError("the rendering processes were closed"))
            self._asked.put(None)
            writer.join()
        for child in children:
            child.stop()


class _Child:
    """One rendering process and its two pipes: requests written in turn, answered in order (a
    thread reads the answers), so that it never waits between two digests."""

    def __init__(self, payload: bytes) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # digest/ importable however this one found it
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, "-m", "digest.render.processes"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests, self.answers = self.process.stdin, self.process.stdout
        self.pending: deque[Future[Any]] = deque()
        self.known: set[str] = set()  # ids of the papers it has
        self.gone = False
        self.writing = threading.Lock()
        _write(self.requests, payload)
        if _read(self.answers) is None:  # its pid, once its Composer is made
            self.requests.close()
            self.answers.close()
            self.process.wait()
            raise EOFError(f"rendering process {self.process.pid} ended as it started")
        threading.Thread(target=self._answered, name=f"render-{self.process.pid}", daemon=True).start()

    def submit(self, content: str, papers: list[Paper], rest: tuple[Any, ...],
               waiting: Future[Any] | None = None) -> Future[Any]:
        """The e-mail of a digest (`content`, planned.encode's), to come (in `waiting`, or a new
        future): the `papers` it has not been sent before go with it (a day's papers recur
        across digests)."""
        waiting = waiting or Future()
        with self.writing:
            if self.gone:
                raise EOFError(f"rendering process {self.process.pid} ended")
            new = list({p.id: p for p in papers if p.id not in self.known}.values())
            self.known.update(p.id for p in new)
            self.pending.append(waiting)
            try:
                _write(self.requests, pickle.dumps((content, new, *rest), protocol=pickle.HIGHEST_PROTOCOL))
            except BaseException:
                self.pending.pop()  # never sent: not this process's to end (it is asked of another)
                raise
        return waiting

    def _answered(self) -> None:
        while (answer := _read(self.answers)) is not None:
            self.pending.popleft().set_result(pickle.loads(answer))
        with self.writing:
            self.gone = True
            waiting, self.pending = list(self.pending), deque()
        for future in waiting:
            future.set_exception(EOFError(f"rendering process {self.process.pid} ended"))
        self.answers.close()

    def stop(self) -> None:
        """The end of its input: it stops, and the end of its answers ends the reading thread
        (which closes them: closing them here would wait for that thread's read)."""
        with self.writing:
            try:
                self.requests.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _write(pipe: IO[bytes], payload: bytes) -> None:
    pipe.write(_SIZE.pack(len(payload)) + payload)
    pipe.flush()


def _read(pipe: IO[bytes]) -> bytes | None:
    head = pipe.read(_SIZE.size)
    if len(head) < _SIZE.size:
        return None
    (size,) = _SIZE.unpack(head)
    body = pipe.read(size)
    return body if len(body) == size else None


# A rendering process makes some hundred thousand short-lived objects a second and keeps its
# caches (cards, fragments, escaped texts) for its life; cycles among them are rare. The cycle
# collector at Python's default (a pass every 700 new objects, walking the caches' containers
# again and again) took ~10 % of its time (bench/render.py).
COLLECT_EVERY = 50_000


def as_rendering_process() -> None:
    """The cycle collector set for a process that renders: what it holds by now (modules,
    templates, configuration) set aside for good, and a pass every COLLECT_EVERY objects."""
    gc.freeze()
    gc.set_threshold(COLLECT_EVERY, 20, 20)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """A rendering process: the configuration and secret first (answered with its pid), then
    one e-mail for each digest, until its input ends (the sending process closed it, or died)."""
    first = _read(requests)
    if first is None:
        return
    config, secret = pickle.loads(first)
    composer = Composer(config, secret=secret)
    as_rendering_process()
    papers: dict[str, Paper] = {}
    _write(answers, pickle.dumps(os.getpid()))
    while (request := _read(requests)) is not None:
        content, new, subscriber, key, to, manage_generation = pickle.loads(request)
        papers.update((p.id, p) for p in new)
        try:
            digest = decode(content, subscriber, papers)
            assert digest is not None  # written by this same version
            answer: Any = composer.email(digest, subscriber, key=key, to=to, manage_generation=manage_generation)
        except Exception as exc:  # noqa: BLE001 - the sending process raises it, as if it had rendered
            answer = exc
        try:
            payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an error that cannot be pickled: said in words
            payload = pickle.dumps(RuntimeError(f"{answer.__class__.__name__}: {answer} ({exc})"))
        _write(answers, payload)


if __name__ == "__main__":
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to standard error, never into the answers
    try:
        serve(sys.stdin.buffer, answers)
        answers.close()
    except BrokenPipeError:  # the sending process is gone (killed): nobody to answer, nothing to say
        pass
    os._exit(0)  # nothing else to keep, and the interpreter's tear-down took 0.3 s of the sender's end
