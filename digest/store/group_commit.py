"""Group commit: the same small write asked for by many threads at once, done in one transaction.

A process sending over several connections marks each digest `sending` before the end of its
message, and each mark must be committed before that message ends. One transaction per mark
made eight threads queue for the database's write lock (and for the interpreter's lock while
holding it). Here the first caller commits what is waiting, the callers that arrive meanwhile
wait for that commit to end and then go out together in the next one: each caller still
returns only once its own change is committed, and a thread alone commits at once, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "value")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.value: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """`submit(item)` from any thread; `execute(items)` runs one transaction for a batch and
    returns one result per item, in order. If it raises, every caller in that batch gets the
    error (their changes were rolled back together)."""

    def __init__(self, execute: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._execute = execute
        self._changed = threading.Condition()
        self._waiting: list[_Slot[T, R]] = []
        self._busy = False
        self.batches = 0  # transactions, for --timings and the tests

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        batch: list[_Slot[T, R]] = []
        with self._changed:
            self._waiting.append(slot)
            while self._busy and not slot.done:
                self._changed.wait()
            if not slot.done:  # nobody is committing: this caller commits all that waits
                self._busy = True
                batch, self._waiting = self._waiting, []
        if batch:
            self._commit(batch)
        if slot.error is not None:
            raise slot.error
        return slot.value  # type: ignore[return-value]

    def _commit(self, batch: list[_Slot[T, R]]) -> None:
        results: Sequence[R] = ()
        error: BaseException | None = None
        try:
            results = self._execute([s.item for s in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            error = exc
        with self._changed:
            self.batches += 1
            for index, slot in enumerate(batch):
                slot.error = error
                slot.value = results[index] if error is None else None
                slot.done = True
            self._busy = False
            self._changed.notify_all()
