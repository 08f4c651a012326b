"""A lease kept alive: a thread that renews it at a fixed interval while its holder works."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from ..errors import DigestError

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls `renew` every `every` (a thread, started on first use) until stopped; `what`
    names the lease in the warning logged when the database is away (the lease may then
    lapse, and whoever relies on it checks it)."""

    def __init__(self, renew: Callable[[], object], every: timedelta, what: str) -> None:
        self.renew, self.every, self.what = renew, every.total_seconds(), what
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="digest-lease", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.renew()
            except DigestError as exc:
                log.warning("could not renew %s: %s", self.what, exc)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
