"""Sending the due digests: match, record in the ledger, render, send, record the outcome.

Order for each digest: recorded (`pending`) → claimed by this run → rendered → sent over
SMTP, the ledger marking it `sending` just before the end of the message → `sent`, with its
papers delivered, when the server accepts it; `uncertain` when the end went out and no reply
came (never retried in the run; sent once more on a later one under smtp.resend_uncertain).
Transient failures are retried in later passes with back-off, then left `pending` for the
next run; permanent ones are recorded, and repeated ones suspend the subscriber. One
subscriber's failure never stops the others.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config import Config, Subscriber, find_subscriber
from ..errors import DigestError
from ..match.matcher import Matcher
from ..match.newly_seen import newly_seen
from ..models import Digest
from ..render.compose import Composer, Email
from ..render.message import message_id
from ..store.database import Store
from ..store.ledger import ACTIVE_RUNS, Entry, Ledger, owner_id
from .schedule import due_slot, last_slot, subscriber_schedule
from .smtp import (
    ConnectionLost,
    PermanentError,
    RateLimit,
    SmtpConfigError,
    SmtpSender,
    TransientError,
    Uncertain,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one subscriber's digest in this run."""

    subscriber: str
    status: str  # sent | empty | failed | deferred | uncertain | suspended | skipped | dry-run | test
    papers: int = 0
    detail: str = ""


@dataclass
class Job:
    subscriber: Subscriber
    digest: Digest
    entry: Entry | None  # None for --dry-run and --to
    claimed: bool = False
    email: Email | None = None
    resend: bool = False  # an uncertain digest sent once more


class Delivery:
    """One configuration's delivery: the store, the ledger, the renderer, SMTP."""

    def __init__(self, config: Config, store: Store, *, composer: Composer | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 stop: threading.Event | None = None,
                 sender_factory: Callable[[], SmtpSender] | None = None) -> None:
        self.config = config
        self.store = store
        self.ledger = Ledger(store)
        self._composer = composer
        self.clock = clock
        self.stop = stop or threading.Event()
        ca_file = config.resolve_local(config.smtp.ca_file) if config.smtp.ca_file else None
        self.sender_factory = sender_factory or (lambda: SmtpSender(config.smtp, ca_file=ca_file))
        self.rate = RateLimit(config.smtp.rate_limit)

    @property
    def composer(self) -> Composer:
        """Made when a digest is to be rendered: `digest run` checks every minute, and most
        minutes nothing is due (compiling the templates takes ~0.1 s)."""
        if self._composer is None:
            self._composer = Composer(self.config, secret=self.store.signing_secret())
        return self._composer

    # ------------------------------------------------------------ what is due

    def period_of(self, subscriber: Subscriber, now: datetime, *, scheduled: bool) -> str | None:
        """The slot a digest would be for: the due one (scheduled runs, within the grace
        period), or for a manual send the latest one (now, before the first)."""
        if scheduled:
            slot = due_slot(self.config, subscriber, now)
        else:
            schedule, timezone = subscriber_schedule(self.config, subscriber)
            slot = last_slot(schedule, timezone, now) or now
        return slot.astimezone(UTC).isoformat(timespec="minutes") if slot else None

    def select(self, emails: Sequence[str] = ()) -> list[Subscriber]:
        wanted = {e.strip().lower() for e in emails}
        chosen = [s for s in self.config.subscribers if not wanted or s.email.lower() in wanted]
        missing = wanted - {s.email.lower() for s in chosen}
        if missing:
            find_subscriber(self.config, sorted(missing)[0])  # raises with a did-you-mean
        return chosen

    # ------------------------------------------------------------ the run

    def run(self, emails: Sequence[str] = (), *, scheduled: bool = False, dry_run: bool = False,
            to: str | None = None, progress: Callable[[Outcome], None] | None = None,
            fresh_state: bool = False) -> list[Outcome]:
        now = self.clock()
        if not (dry_run or to or fresh_state):
            self._refuse_a_lost_state()
        run_id = uuid.uuid4().hex[:12]
        outcomes: list[Outcome] = []

        def done(outcome: Outcome) -> None:
            outcomes.append(outcome)
            log.info("%s: %s %s", outcome.subscriber, outcome.status, outcome.detail)
            if progress:
                progress(outcome)

        if not (dry_run or to):
            back = self.ledger.recover(now)
            if back:
                log.warning("%d digests of an interrupted run recovered (to send again, or uncertain)", back)
        jobs = self._prepare(self.select(emails), now, scheduled=scheduled, record=not (dry_run or to), done=done)
        if dry_run:
            for job in jobs:
                email_ = self.composer.email(job.digest, job.subscriber)
                done(Outcome(job.subscriber.email, "dry-run", len(job.digest.papers),
                             f"{email_.html_bytes:,} bytes of HTML: {email_.subject}"))
            return outcomes
        ACTIVE_RUNS.add(run_id)
        try:
            self._send_all(jobs, now, owner_id(run_id), to, done)
        finally:
            ACTIVE_RUNS.discard(run_id)
        return outcomes

    def _refuse_a_lost_state(self) -> None:
        """A database with no digest at all, beside a configuration that has sent before, is a
        lost or replaced one: sending now would send today's digests again to everyone, people
        who unsubscribed included. Stop and say how to restore."""
        marker = self.store.sent_before()
        if marker is None or self.ledger.entries_exist():
            return
        folder = self.config.backup_folder()
        backups = sorted(folder.glob("digest-*.db"), reverse=True) if folder.is_dir() else []
        restore = (f"restore the latest backup ({backups[0]}: copy it over {self.store.file} with nothing "
                   "running)" if backups else "restore the database from your backups")
        raise FreshStateError(
            f"the state database {self.store.file or self.store.url} holds no digests, but this configuration "
            f"has sent digests since {marker.get('first_sent', 'earlier')}: the database was lost or replaced, "
            "and sending now would repeat today's digests to everyone, unsubscribed people included",
            hint=f"{restore}; or, to start afresh on purpose, `digest send --fresh-state`")

    def _prepare(self, subscribers: list[Subscriber], now: datetime, *, scheduled: bool, record: bool,
                 done: Callable[[Outcome], None]) -> list[Job]:
        """Match everyone due at once; record each digest in the ledger."""
        due: list[tuple[Subscriber, str]] = []
        resends: list[tuple[Subscriber, Entry]] = []
        for subscriber in subscribers:
            if not subscriber.enabled:
                continue
            state = self.ledger.state(subscriber.email)
            if record and not state.active:
                why = "unsubscribed" if state.unsubscribed_at else f"suspended: {state.suspended_reason}"
                done(Outcome(subscriber.email, "suspended" if state.suspended_at else "skipped", detail=why))
                continue
            period = self.period_of(subscriber, now, scheduled=scheduled)
            if period is None:
                continue
            existing = self.ledger.entry(subscriber.email, period) if record else None
            if existing is not None and existing.state == "uncertain" and self._resend(existing):
                resends.append((subscriber, existing))
                continue
            if existing is not None and existing.state != "pending":
                if not scheduled:
                    done(Outcome(subscriber.email, "skipped", detail=f"digest for {period} already {existing.state}"))
                continue
            due.append((subscriber, period))
        jobs = [self._resend_job(subscriber, entry, now) for subscriber, entry in resends]
        if not due:
            return jobs
        _, digests = newly_seen(self.config, self.store, [s for s, _ in due], now,
                                ledger=self.ledger if record else None)
        for (subscriber, period), digest in zip(due, digests):
            entry = None
            if record:
                paper_ids = [p.id for p in digest.papers]
                msg_id = message_id(self.config.sender.from_, subscriber.email, period)
                entry, created = self.ledger.record(subscriber.email, period, msg_id, paper_ids, now)
                if not created and entry.state == "pending":  # left by an earlier run: matched anew
                    self.ledger.rematch(entry.id, paper_ids, now)
                if digest.is_empty and not self._send_empty(subscriber):
                    self.ledger.rematch(entry.id, [], now, state="empty")
                    done(Outcome(subscriber.email, "empty", detail="nothing new matched"))
                    continue
            elif digest.is_empty and not self._send_empty(subscriber):
                done(Outcome(subscriber.email, "empty", detail="nothing new matched"))
                continue
            jobs.append(Job(subscriber, digest, entry))
        return jobs

    def _resend(self, entry: Entry) -> bool:
        """Whether an uncertain digest goes out once more (smtp.resend_uncertain)."""
        return self.config.smtp.resend_uncertain == "once" and entry.uncertain_resends < 1

    def _resend_job(self, subscriber: Subscriber, entry: Entry, now: datetime) -> Job:
        """The same digest again: its recorded papers, the same Message-ID (the period's)."""
        papers = self.store.papers(ids=list(entry.papers))
        earliest = min((p.first_seen_at for p in papers if p.first_seen_at), default=now)
        digest = Matcher([subscriber], self.config.defaults, papers).digest(subscriber, now, since=earliest)
        return Job(subscriber, digest, entry, resend=True)

    def _send_empty(self, subscriber: Subscriber) -> bool:
        return bool(self.config.setting(subscriber, "send_empty"))

    # ------------------------------------------------------------ sending

    def _send_all(self, jobs: list[Job], now: datetime, owner: str, to: str | None,
                  done: Callable[[Outcome], None]) -> None:
        """Send in passes: a transient failure waits for the next pass (after a back-off that
        doubles), so one slow or greylisting recipient never holds up the others; after
        `smtp.retries` passes what is left waits for the next run. A server that keeps
        dropping or timing out ends the pass early instead of being tried for every digest."""
        if not jobs:
            return
        _ = self.composer  # made here, once, before the threads that render with it
        local = threading.local()
        senders: list[SmtpSender] = []
        fatal: list[SmtpConfigError] = []
        lock = threading.Lock()
        connection_failures = [0]  # in a row, across the connections

        def sender() -> SmtpSender:
            if not hasattr(local, "sender"):
                local.sender = self.sender_factory()
                senders.append(local.sender)
            return local.sender

        def work(job: Job) -> TransientError | None:
            if self.stop.is_set() or fatal:
                return TransientError("the run was stopped")
            if connection_failures[0] >= _SERVER_DOWN_AFTER:
                return TransientError(f"SMTP server {sender().where} keeps failing")
            try:
                outcome = self._send_one(job, sender(), now, owner, to)
            except TransientError as exc:
                with lock:
                    connection_failures[0] = connection_failures[0] + 1 if isinstance(exc, ConnectionLost) else 0
                return exc
            except SmtpConfigError as exc:
                fatal.append(exc)
                return exc  # type: ignore[return-value]
            except Exception as exc:  # noqa: BLE001 - one digest's bug never stops the batch
                log.exception("digest for %s failed", job.subscriber.email)
                return TransientError(f"internal error: {exc.__class__.__name__}: {exc}")
            with lock:  # no reply after the end of a message is a failing connection too
                connection_failures[0] = connection_failures[0] + 1 if outcome.status == "uncertain" else 0
            done(outcome)
            return None

        waiting: list[tuple[Job, BaseException]] = []
        try:
            remaining = jobs
            for attempt in range(self.config.smtp.retries + 1):
                if attempt:
                    delay = min(60.0, self.config.smtp.retry_wait * 2 ** (attempt - 1))
                    if self.stop.wait(delay):
                        break
                    connection_failures[0] = 0
                with ThreadPoolExecutor(max_workers=self.config.smtp.connections) as pool:
                    results = list(pool.map(work, remaining))
                waiting = [(job, error) for job, error in zip(remaining, results) if error is not None]
                remaining = [job for job, _ in waiting]
                if not remaining or fatal or self.stop.is_set():
                    break
        finally:
            for s in senders:
                s.close()
        for job, error in waiting:
            if job.entry is not None:
                self.ledger.deferred(job.entry.id, str(error), self.clock())
            if not isinstance(error, SmtpConfigError):
                done(Outcome(job.subscriber.email, "deferred", len(job.digest.papers), f"{error} (left for the next run)"))
        if fatal:
            raise fatal[0]

    def _send_one(self, job: Job, sender: SmtpSender, now: datetime, owner: str, to: str | None) -> Outcome:
        """One attempt; TransientError leaves the digest claimed for the next pass."""
        subscriber, entry = job.subscriber, job.entry
        if entry is not None and not job.claimed:
            claimed = (self.ledger.claim_uncertain(entry.id, self.clock(), owner, limit=1) if job.resend
                       else self.ledger.claim(entry.id, self.clock(), owner))
            if not claimed:
                return Outcome(subscriber.email, "skipped", detail="another run is sending it")
            job.claimed = True
        if job.email is None:
            key = entry.period if entry is not None else now.isoformat()
            job.email = self.composer.email(job.digest, subscriber, key=key)
            if to:
                del job.email.message["To"]
                job.email.message["To"] = to
        mark = (lambda: self.ledger.sending(entry.id, self.clock())) if entry is not None else (lambda: None)
        papers = len(job.digest.papers)
        try:
            self.rate.wait()
            sender.send(job.email.message, before_end=mark)
        except Uncertain as exc:
            if entry is None:
                return Outcome(subscriber.email, "uncertain", papers, str(exc))
            self.ledger.uncertain(entry.id, str(exc), self.clock())
            if job.resend:
                again = "not sent again (it was already sent once more)"
            elif self.config.smtp.resend_uncertain == "never":
                again = "not sent again (smtp.resend_uncertain: never)"
            else:
                again = "sent once more on the next run"
            return Outcome(subscriber.email, "uncertain", papers, f"{exc}; {again}")
        except PermanentError as exc:
            if entry is None:
                return Outcome(subscriber.email, "failed", papers, str(exc))
            suspended = self.ledger.failed(entry, str(exc), self.clock(), self.config.smtp.suspend_after)
            return Outcome(subscriber.email, "failed", papers, str(exc) + ("; subscriber suspended" if suspended else ""))
        if entry is not None:
            self.ledger.sent(entry, self.clock())
            self.store.mark_sent(self.clock())
            return Outcome(subscriber.email, "sent", papers,
                           job.email.subject + (" (sent again: the first try's reply never came)" if job.resend else ""))
        return Outcome(subscriber.email, "test", papers, f"sent to {to}, not recorded")


_SERVER_DOWN_AFTER = 3  # connection failures in a row that end a pass


class FreshStateError(DigestError):
    """The state database is empty but the configuration has sent before: it was lost."""


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
