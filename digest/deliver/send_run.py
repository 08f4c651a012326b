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
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import Config, Subscriber
from ..errors import DigestError
from ..match.matcher import Matcher
from ..match.newly_seen import newly_seen
from ..models import Digest, Paper
from ..render.compose import Composer, Email
from ..render.message import message_id
from ..render.planned import decode, encode, paper_ids
from ..render.processes import RenderProcesses, processes_for
from ..render.renderer import templates_at_hand
from ..store.database import Store
from ..store.directory import Directory, Listed
from ..store.heartbeat import Heartbeat
from ..store.ledger import ACTIVE_RUNS, Entry, Ledger, Planned, owner_id, subscriber_key
from ..store.locks import Locks
from . import roster
from .schedule import due_slot, last_slot, next_slot, receiving, subscriber_schedule
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
STOPPED_BY_ERROR = "not sent: the run stopped on the error below"  # a digest a fatal error left (smtp: login, TLS, host)


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
    email: Email | None = None
    resend: bool = False  # an uncertain digest sent once more
    manage_generation: int = 0  # of the subscriber's manage link, from their directory row (no query of its own)
    asked: Future[Any] | None = None  # its e-mail, asked of a rendering process ahead of its turn


# Digests a run claims before it starts processes to render (render/processes.py): they take
# about a second of CPU to start, a tenth of what rendering 300 digests here would hold the
# sending threads for. Until they are up, this process renders. A send to everyone starts them
# at once when there are this many subscribers.
RENDER_PROCESSES_AFTER = 200


class Delivery:
    """One configuration's delivery: the store, the ledger, the renderer, SMTP."""

    def __init__(self, config: Config, store: Store, *, composer: Composer | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 stop: threading.Event | None = None,
                 sender_factory: Callable[[], SmtpSender] | None = None) -> None:
        self.config = config
        self.store = store
        self.timings = Timings()
        self.ledger: Ledger = self.timings.timed_calls(Ledger(store), "ledger")  # type: ignore[assignment]
        self.locks = Locks(store)
        self._composer = composer
        self._composer_given = composer is not None  # (tests, previews): not one rendering processes can make
        self.rendering: RenderProcesses | None = None  # while a run sends through several connections
        self.rendered_elsewhere = 0  # e-mails rendered by those processes, all runs
        self._papers: dict[str, Paper] = {}  # papers of claimed digests, by id (they recur across digests)
        self.directory = Directory(store)
        self._marked = False  # the marker that this configuration has sent is written
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
            self._composer = Composer(self.rendering_config(), secret=self.store.signing_secret())
        return self._composer

    def rendering_config(self) -> Config:
        """The configuration digests are rendered with: without its `templates:` folder if
        that is lost while `digest run` runs (render.renderer.templates_at_hand)."""
        folder = Path(self.config.resolve_local(self.config.templates)) if self.config.templates else None
        if templates_at_hand(folder, "sending with the built-in templates") == folder:
            return self.config
        return self.config.model_copy(update={"templates": None})

    def _render_processes(self) -> RenderProcesses | None:
        """Processes that render while this one sends, with several connections and CPUs
        (render/processes.py); none for a composer given to this delivery (tests, previews):
        theirs is made from the configuration alone."""
        count = processes_for(self.config.smtp.connections)
        if not count or self._composer_given:
            return None
        composer = self.composer  # (its configuration: the folder checked once, not again here)
        return RenderProcesses(composer.config, self.store.signing_secret(), count, composer)

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
        """The named subscribers (of any origin: subscribers.yaml's and the database's), or with
        none named everyone, by address; a configuration read without its subscribers names nobody here
        (its runs read them from the directory as they plan)."""
        return [roster.subscriber(row) for row in self.select_listed(emails)]

    def select_listed(self, emails: Sequence[str] = ()) -> list[Listed]:
        """As `select`, their directory rows."""
        now = self.clock()
        if emails:
            return roster.find_listed(self.config, self.directory, sorted({e.strip().lower() for e in emails}), now)
        return list(roster.everyone_listed(self.config, self.directory, now)) if self.config.subscribers_read else []

    # ------------------------------------------------------------ the run

    def run(self, emails: Sequence[str] = (), *, scheduled: bool = False, dry_run: bool = False,
            to: str | None = None, progress: Callable[[Outcome], None] | None = None,
            fresh_state: bool = False, plan: bool = True, work: bool = True) -> list[Outcome]:
        """Plan what is due (once, whichever process gets there first), then work: claim
        digests in batches, render and send them, until the plan is done. Any number of runs
        at once — threads, processes, machines on one database — share the plan and divide it.
        `plan=False`: only send what others planned (a worker); `work=False`: only plan."""
        now = self.clock()
        if not (dry_run or to or fresh_state):
            self._refuse_a_lost_state()
        outcomes: list[Outcome] = []

        def done(outcome: Outcome) -> None:
            outcomes.append(outcome)
            log.log(logging.WARNING if outcome.status in ("failed", "deferred", "suspended") else logging.INFO,
                    "%s: %s %s", outcome.subscriber, outcome.status, outcome.detail)
            if progress:
                progress(outcome)

        if dry_run or to:
            self._unrecorded(self.select_listed(emails), now, scheduled=scheduled, dry_run=dry_run, to=to, done=done)
            return outcomes
        subscribers = self.select(emails) if emails else []  # everyone: read from the directory as planned
        roster.sync(self.config, self.directory, now)  # one query unless subscribers.yaml changed
        run_id = uuid.uuid4().hex[:12]
        only = [s.email for s in subscribers] if emails else None
        ACTIVE_RUNS.add(run_id)
        try:
            self._work(subscribers, now, owner_id(run_id), scheduled=scheduled, only=only, done=done, plan=plan, work=work)
        except DigestError:
            if work and not scheduled:  # a person is reading (a daemon's log says its error once)
                self._say_unsent(outcomes, now, only, STOPPED_BY_ERROR, done)
            raise
        finally:
            ACTIVE_RUNS.discard(run_id)
        if work and not scheduled and self.stop.is_set():
            self._say_unsent(outcomes, now, only, "not sent: the run was stopped before its turn", done)
        return outcomes

    def _say_unsent(self, outcomes: list[Outcome], now: datetime, only: list[str] | None, why: str,
                    done: Callable[[Outcome], None]) -> None:
        """The plan's digests a stopped run did not come to, each said (none is lost: they wait)."""
        told = {subscriber_key(o.subscriber) for o in outcomes}
        try:
            waiting = self.ledger.waiting(now - self.claim_window(), only)
        except DigestError:  # the database is what failed: the error says so
            return
        for entry in waiting:
            if entry.subscriber not in told:
                done(Outcome(entry.subscriber, "deferred", len(entry.papers),
                             f"{why} (left for the next run)"))

    def _unrecorded(self, rows: list[Listed], now: datetime, *, scheduled: bool, dry_run: bool,
                    to: str | None, done: Callable[[Outcome], None]) -> None:
        """--dry-run: what a send would do now (the same people skipped, the same papers new to
        each), rendered, nothing sent or recorded. --to: each named subscriber's digest of their
        look-back, whatever the ledger says, sent to `to`, nothing recorded."""
        listed = [(roster.subscriber(row), row) for row in rows]
        receivers = [(s, row) for s, row in listed if receiving(self.config, s, now)]
        if dry_run:  # the ledger read as a send reads it, never written
            due_now: list[tuple[Subscriber, str, Entry | None]] = []
            self._triage([s for s, _ in receivers], now, scheduled=scheduled, done=done, due=due_now, resend=[])
            wanted = {subscriber_key(s.email) for s, _, _ in due_now}  # and those a plan has, still to send:
            wanted |= {e.subscriber for e in self.ledger.waiting(now - self.claim_window(), [s.email for s, _ in receivers])}
            wanted |= {e.subscriber for e in self.ledger.left_behind(now)}  # a send recovers them first
            due = [(s, row) for s, row in receivers if subscriber_key(s.email) in wanted]
        else:
            due = [(s, row) for s, row in receivers if self.period_of(s, now, scheduled=scheduled) is not None]
        _, digests = newly_seen(self.config, self.store, [s for s, _ in due], now,
                                ledger=self.ledger if dry_run else None)
        jobs = []
        for (subscriber, row), digest in zip(due, digests):
            if digest.is_empty and not self._send_empty(subscriber):
                done(Outcome(subscriber.email, "empty", detail="nothing new matched"))
                continue
            jobs.append(Job(subscriber, digest, None, manage_generation=row.manage_generation))
        if dry_run:
            for job in jobs:
                email_ = self.composer.email(job.digest, job.subscriber, manage_generation=job.manage_generation)
                done(Outcome(job.subscriber.email, "dry-run", len(job.digest.papers),
                             f"{email_.html_bytes:,} bytes of HTML: {email_.subject}"))
            return
        state = Sending(self.sender_factory, self.config.smtp.connections)
        try:
            failures = self._send_passes(jobs, now, "", to, done, state)
        finally:
            state.close()
        for job, error in failures:  # a copy to `to`: nothing recorded, so nothing waits for a next run
            done(Outcome(job.subscriber.email, "failed", len(job.digest.papers),
                         f"{error} (a copy to {to}: not recorded, not tried again)"))

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

    # ------------------------------------------------------------ planning

    def plan(self, subscribers: Iterable[Subscriber], now: datetime, *, scheduled: bool,
             done: Callable[[Outcome], None] = lambda outcome: None) -> int:
        """Record every due digest of `subscribers` as pending (or empty), matched once, in
        batches of PLAN_BATCH subscribers per transaction; returns how many were recorded. A
        digest already planned by another run is left as it is; one left pending by an
        earlier run is matched anew; an uncertain one is queued once more
        (smtp.resend_uncertain)."""
        due: list[tuple[Subscriber, str, Entry | None]] = []
        resend: list[int] = []
        batch: list[Subscriber] = []
        for subscriber in subscribers:
            if receiving(self.config, subscriber, now):
                batch.append(subscriber)
            if len(batch) >= PLAN_BATCH:
                self._triage(batch, now, scheduled=scheduled, done=done, due=due, resend=resend)
                batch = []
        if batch:
            self._triage(batch, now, scheduled=scheduled, done=done, due=due, resend=resend)
        return self._record(due, resend, now, done)

    def plan_due(self, now: datetime, *, done: Callable[[Outcome], None] = lambda outcome: None) -> int:
        """A scheduled run's plan: only the subscribers whose next digest is due, found by one
        indexed query per PLAN_BATCH (not by asking about everyone every minute); each one's
        next_due then moves on to their first slot after now."""
        due: list[tuple[Subscriber, str, Entry | None]] = []
        resend: list[int] = []
        moves: list[tuple[str, datetime | None]] = []
        after: tuple[datetime, str] | None = None
        while page := self.directory.due(now, limit=PLAN_BATCH, after=after):
            after = (page[-1].next_due, page[-1].key)  # type: ignore[assignment]
            listed = [roster.subscriber(row) for row in page]
            self._triage([s for s in listed if receiving(self.config, s, now)], now, scheduled=True, done=done, due=due, resend=resend)
            moves += [(row.key, next_slot(row.schedule, row.timezone, now)) for row in page]
        if self.config.smtp.resend_uncertain == "once":  # whoever is due now: the daemon never re-sent one
            # (only a manual send in the same slot did, as it triages everyone)
            resend = sorted(set(resend) | set(self.ledger.uncertain_to_resend(now - self.claim_window())))
        planned = self._record(due, resend, now, done)
        self.directory.advance(moves, self.clock())  # after the plan is recorded: a crash between re-plans (no-op)
        if planned:  # what an operator watches for: a slot planned, and how much there is to send
            log.info("planned %d digest%s (%d subscribers due, %d sent once more); workers send them",
                     planned, "s" * (planned != 1), len(moves), len(resend))
        return planned

    def _triage(self, chunk: Sequence[Subscriber], now: datetime, *, scheduled: bool,
                done: Callable[[Outcome], None], due: list[tuple[Subscriber, str, Entry | None]],
                resend: list[int]) -> None:
        """Which of `chunk` need a digest matched (into `due`) or an uncertain one sent again
        (into `resend`): two questions to the ledger for the whole chunk."""
        fresh = now - PLAN_FRESH
        states = self.ledger.states([s.email for s in chunk])
        periods = {s.email: self.period_of(s, now, scheduled=scheduled) for s in chunk}
        existing = self.ledger.entries_for([(s.email, p) for s in chunk if (p := periods[s.email]) is not None])
        for subscriber in chunk:
            state = states[subscriber.email]
            if not state.active:
                why = "unsubscribed" if state.unsubscribed_at else f"suspended: {state.suspended_reason}"
                done(Outcome(subscriber.email, "suspended" if state.suspended_at else "skipped", detail=why))
                continue
            period = periods[subscriber.email]
            if period is None:
                continue
            entry = existing.get((subscriber.email, period))
            if entry is None:
                due.append((subscriber, period, None))
            elif entry.state == "uncertain" and self._resend(entry):
                resend.append(entry.id)
            elif entry.state == "pending":
                if entry.planned_at is None or entry.planned_at < fresh:  # left by an earlier run
                    due.append((subscriber, period, entry))
            elif entry.state in ("claimed", "sending"):
                pass  # a worker has it
            elif not scheduled:
                done(Outcome(subscriber.email, "skipped", detail=f"digest for {period} already {entry.state}"))

    def _record(self, due: list[tuple[Subscriber, str, Entry | None]], resend: list[int], now: datetime,
                done: Callable[[Outcome], None]) -> int:
        """Match the due subscribers once and record their digests, PLAN_BATCH per transaction."""
        if resend:
            self.ledger.plan([], [], resend, now)
        if not due:
            return len(resend)
        _, digests = newly_seen(self.config, self.store, [s for s, _, _ in due], now, ledger=self.ledger,
                                batch=PLAN_BATCH)
        rows: list[Planned] = []
        rematch: list[tuple[int, Planned]] = []
        size = FIRST_RECORDED  # then PLAN_BATCH
        for (subscriber, period, entry), digest in zip(due, digests):
            empty = digest.is_empty and not self._send_empty(subscriber)
            planned = Planned(subscriber.email, period, message_id(self.config.sender.from_, subscriber.email, period),
                              tuple(p.id for p in digest.papers), None if empty else encode(digest),
                              "empty" if empty else "pending")
            if empty:
                done(Outcome(subscriber.email, "empty", detail="nothing new matched"))
            if entry is None:
                rows.append(planned)
            else:
                rematch.append((entry.id, planned))
            if len(rows) + len(rematch) >= size:
                self.ledger.plan(rows, rematch, [], now)
                rows, rematch, size = [], [], PLAN_BATCH
        self.ledger.plan(rows, rematch, [], now)
        return len(due) + len(resend)

    def claim_window(self) -> timedelta:
        """How old a plan's pending digests may be and still be sent: the grace period, as for a
        slot itself (workers that start late, or all stopped a while, send the plan still; with
        ten minutes, a plan nobody had claimed by then was left pending for ever)."""
        return max(PLAN_FRESH, self.config.defaults.grace)

    def _resend(self, entry: Entry) -> bool:
        """Whether an uncertain digest goes out once more (smtp.resend_uncertain)."""
        return self.config.smtp.resend_uncertain == "once" and entry.uncertain_resends < 1

    def _send_empty(self, subscriber: Subscriber) -> bool:
        return bool(self.config.setting(subscriber, "send_empty"))

    # ------------------------------------------------------------ working

    def _work(self, subscribers: list[Subscriber], now: datetime, owner: str, *, scheduled: bool,
              only: list[str] | None, done: Callable[[Outcome], None], plan: bool = True, work: bool = True) -> None:
        """Plan (when no other run is planning), then claim batches of the plan's digests and
        send them, until none is left and no other worker holds any (a worker that dies leaves
        its claims to the others when its lease ends). Transient failures are tried again in
        passes after the batches, then left pending for the next run."""
        lease = self.config.workers.lease
        recovered = self.ledger.recover(now)
        if recovered:
            log.warning("%d digests of an interrupted run recovered (to send again, or uncertain)", recovered)
        planned = not plan  # a worker alone takes what the scheduler planned
        since = now - self.claim_window()
        claim = self.config.workers.batch * self.config.smtp.connections  # a batch per connection
        heartbeat = Heartbeat(lambda: self.ledger.renew(owner, self.clock() + lease), lease / 3, "this worker's claims")
        state = Sending(self.sender_factory, self.config.smtp.connections)
        claimed = 0  # by this run: rendering processes pay off past RENDER_PROCESSES_AFTER digests
        failures: list[tuple[Job, BaseException]] = []
        sent: list[str] = []
        stream = None if state.pool is None else _Stream(state.pool, self._attempt(now, owner, None, done, state, sent))
        if stream is not None and plan and not scheduled and self.rendering is None:  # a send to everyone (or to
            # those named): started now, they are up by the first claim, while this process plans
            expected = len(subscribers) if only is not None else self.directory.count()
            if expected >= RENDER_PROCESSES_AFTER:
                self.rendering = self._render_processes()

        def make_plan() -> bool:
            with self.locks.held("plan", self.clock(), lease, clock=self.clock) as mine:
                if mine:
                    with self.timings.timed("plan"):
                        if only is not None:
                            self.plan(subscribers, now, scheduled=scheduled, done=done)
                        elif scheduled:
                            self.plan_due(now, done=done)
                        else:
                            self.plan(self._everyone(), now, scheduled=False, done=done)
                return mine

        planner: _Planner | None = None
        try:
            while not self.stop.is_set() and not state.fatal:
                if not planned and (stream is None or not work):
                    planned = make_plan()
                elif not planned:  # several connections: they send what is recorded while the rest is planned
                    planner = planner or _Planner(make_plan)
                    if planner.finished():
                        planned, planner = planner.result(), None
                if not work:
                    break  # planned, or another run is planning: the workers take it from here
                entries = self.ledger.claim_batch(owner, self.clock(), limit=claim,
                                                  planned_since=since, lease=lease, subscribers=only)
                if entries:
                    heartbeat.start()
                    jobs = self._jobs(entries, now, done)
                    if stream is None:  # the last digest's `sent` rides with the next batch's first mark
                        failures += self._send_passes(jobs, now, owner, None, done, state, retries=0, sent=sent)
                    else:  # claim the next batch while this one's digests are still going out
                        _ = self.composer  # made once, before the threads that render with it
                        claimed += len(entries)
                        if self.rendering is None and claimed >= RENDER_PROCESSES_AFTER:
                            self.rendering = self._render_processes()
                        if self.rendering is not None:  # rendered while the connections send what is before them
                            for job in jobs:  # the digest as recorded: not encoded again
                                entry = job.entry
                                job.asked = self.rendering.ahead(job.digest, job.subscriber,
                                                                 key=entry.period if entry else None,
                                                                 content=entry.content if entry else None,
                                                                 manage_generation=job.manage_generation)
                        stream.add(jobs)
                        failures += stream.wait(leave=claim)
                    if sent:
                        self._has_sent()
                    continue
                if stream is not None and stream.running:  # nothing to claim: let what is queued finish
                    failures += stream.wait(leave=0)
                    self._record_accepted(state, sent)
                    continue
                if sent or any(state.accepted.values()):  # nothing to claim: record what was sent, then wait
                    self._record_accepted(state, sent)
                # One instant for both: a lease that ends between two readings of the clock would
                # be neither over for the first (recover) nor live for the second, and the claims
                # it covers would be left behind.
                instant = self.clock()
                if self.ledger.recover(instant):
                    continue
                if planned and not self.ledger.in_progress(since, instant, only, besides=owner):
                    break
                # another run plans or sends (or this one's planner has not recorded a batch yet): wait
                self.stop.wait(0.05 if planner is not None else min(0.25, lease.total_seconds() / 10))
            if failures and not (self.stop.is_set() or state.fatal):
                failures = self._send_passes([job for job, _ in failures], now, owner, None, done, state,
                                             previous=failures)
        finally:
            if planner is not None:  # stopped or failed: the plan's current batch is recorded whole
                planner.thread.join()
            if stream is not None:  # stopped or failed: what is queued ends (or gives up) first
                failures += stream.wait(leave=0)
            self._record_accepted(state, sent)
            heartbeat.stop()
            state.close()
            if self.rendering is not None:
                self.rendering.close()
                self.rendered_elsewhere += self.rendering.rendered
                self.rendering = None
            for job, error in failures:
                if job.entry is not None:  # as `digest status` will say it, later, with no error below it
                    kept = f"not sent: its run stopped on an error ({state.fatal[0]})" \
                        if str(error) == STOPPED_BY_ERROR and state.fatal else str(error)
                    self.ledger.deferred(job.entry.id, kept, self.clock())
                if not isinstance(error, SmtpConfigError):
                    done(Outcome(job.subscriber.email, "deferred", len(job.digest.papers),
                                 f"{error} (left for the next run)"))
            self.ledger.release(owner, self.clock())
        if state.fatal:
            raise state.fatal[0]

    def _jobs(self, entries: list[Entry], now: datetime, done: Callable[[Outcome], None]) -> list[Job]:
        """The claimed digests, ready to render: their subscriber (still in the configuration
        and still subscribed) and their digest, rebuilt from the plan's record."""
        listed = self.directory.get([e.subscriber for e in entries])
        states = self.ledger.states([e.subscriber for e in entries])
        wanted = {pid for e in entries for pid in (paper_ids(e.content) if e.content else e.papers)}
        missing = [pid for pid in wanted if pid not in self._papers]
        if missing:
            self._papers.update((p.id, p) for p in self.store.papers(ids=missing))
        jobs = []
        for entry in entries:
            row = listed.get(entry.subscriber)
            subscriber = roster.subscriber(row) if row is not None else None
            state = states[entry.subscriber]
            if row is None or subscriber is None or not receiving(self.config, subscriber, now) or not state.active:
                why = ("no longer in the configuration" if subscriber is None
                       else "paused" if not receiving(self.config, subscriber, now)
                       else "unsubscribed since it was planned" if state.unsubscribed_at else "suspended")
                self.ledger.cancel(entry.id, why, self.clock())
                done(Outcome(entry.subscriber, "skipped", detail=why))
                continue
            digest = decode(entry.content, subscriber, self._papers) if entry.content else None
            if digest is None:  # recorded by an older version: matched again over its recorded papers
                digest = self._rebuilt(subscriber, entry, now)
            jobs.append(Job(subscriber, digest, entry, resend=entry.uncertain_resends > 0,
                            manage_generation=row.manage_generation))
        if len(self._papers) > 50_000:  # a day's papers recur across digests; bound the cache all the same
            self._papers.clear()
        return jobs

    def _everyone(self) -> Iterator[Subscriber]:
        """Every subscriber in the directory, read PLAN_BATCH at a time."""
        for page in self.directory.pages(size=PLAN_BATCH):
            yield from (roster.subscriber(row) for row in page)

    def _rebuilt(self, subscriber: Subscriber, entry: Entry, now: datetime) -> Digest:
        """The same digest again from its recorded papers (the same Message-ID: the period's)."""
        papers = [self._papers[pid] for pid in entry.papers if pid in self._papers]
        earliest = min((p.first_seen_at for p in papers if p.first_seen_at), default=now)
        return Matcher([subscriber], self.config.defaults, papers).digest(subscriber, now, since=earliest)

    # ------------------------------------------------------------ sending

    def _send_passes(self, jobs: list[Job], now: datetime, owner: str, to: str | None,
                     done: Callable[[Outcome], None], state: Sending, *, retries: int | None = None,
                     previous: list[tuple[Job, BaseException]] | None = None,
                     sent: list[str] | None = None) -> list[tuple[Job, BaseException]]:
        """Send in passes: a transient failure waits for the next pass (after a back-off that
        doubles), so one slow or greylisting recipient never holds up the others; returns what
        is still failing after `retries` more passes (smtp.retries by default). A server that
        keeps dropping or timing out ends the pass early instead of being tried for every digest.
        With `sent` (the caller's list), the caller records what the passes left unrecorded."""
        if not jobs:
            return []
        _ = self.composer  # made here, once, before the threads that render with it
        record = to is None and sent is None
        sent = [] if sent is None else sent
        work = self._attempt(now, owner, to, done, state, sent)

        # Until a pass says otherwise, every job is still waiting (with its last error, if retried).
        waiting: list[tuple[Job, BaseException]] = list(previous) if previous is not None else [
            (job, TransientError("the run was stopped")) for job in jobs]
        passes = self.config.smtp.retries if retries is None else retries
        try:
            remaining = jobs
            # A first pass, then `passes` retries; or, for what earlier batches left, the retries alone.
            for attempt in range(0 if previous is None else 1, passes + 1):
                if attempt:
                    delay = min(60.0, self.config.smtp.retry_wait * 2 ** (attempt - 1))
                    if self.stop.wait(delay):
                        break
                    state.connection_failures = 0
                results = state.map(work, remaining)
                if record:
                    self._record_accepted(state, sent)
                waiting = [(job, error) for job, error in zip(remaining, results) if error is not None]
                remaining = [job for job, _ in waiting]
                if not remaining or state.fatal or self.stop.is_set():
                    break
        finally:
            if record:
                self._record_accepted(state, sent)
        return waiting

    def _attempt(self, now: datetime, owner: str, to: str | None, done: Callable[[Outcome], None],
                 state: Sending, sent: list[str]) -> Callable[[Job], BaseException | None]:
        """One attempt at a job, as the sending threads run it: None when it is done (sent,
        failed for good, skipped), else the error that leaves it for a later pass. The
        addresses it reached are added to `sent` (their refusal counts reset when recorded)."""
        lock = state.lock

        def work(job: Job) -> BaseException | None:
            if self.stop.is_set() or state.fatal:
                return TransientError(STOPPED_BY_ERROR if state.fatal else "the run was stopped")
            if state.connection_failures >= _SERVER_DOWN_AFTER:
                return TransientError(f"SMTP server {state.sender().where} keeps failing")
            try:
                outcome = self._send_one(job, state.sender(), now, owner, to, state)
            except TransientError as exc:
                with lock:
                    state.connection_failures = state.connection_failures + 1 if isinstance(exc, ConnectionLost) else 0
                return exc
            except SmtpConfigError as exc:
                state.fatal.append(exc)
                return exc
            except Exception as exc:  # noqa: BLE001 - one digest's bug never stops the batch
                log.exception("digest for %s failed", job.subscriber.email)
                return TransientError(f"internal error: {exc.__class__.__name__}: {exc}")
            with lock:  # no reply after the end of a message is a failing connection too
                state.connection_failures = state.connection_failures + 1 if outcome.status == "uncertain" else 0
                if outcome.status == "sent":
                    sent.append(job.subscriber.email)
            done(outcome)
            return None

        return work

    def _record_accepted(self, state: Sending, sent: list[str]) -> None:
        """What the connections sent and have not recorded yet, with the refusal counts of
        everyone who got a digest reset, in one commit (after a pass, or when a worker has
        nothing left to claim)."""
        accepted = [entry for entries in state.accepted.values() for entry in entries]
        self.ledger.sent_all(accepted, self.clock(), subscribers=sent)
        state.accepted.clear()
        if sent:
            self._has_sent()
        sent.clear()

    def _has_sent(self) -> None:
        """This configuration has sent digests: the marker beside it says so from the first one
        (a database lost or replaced later is then noticed, not taken for a fresh start)."""
        if not self._marked:
            self.store.mark_sent(self.clock())
            self._marked = True

    def _send_one(self, job: Job, sender: SmtpSender, now: datetime, owner: str, to: str | None,
                  state: Sending) -> Outcome:
        """One attempt; TransientError leaves the digest claimed for the next pass."""
        subscriber, entry = job.subscriber, job.entry
        if job.email is None:
            key = entry.period if entry is not None else now.isoformat()
            with self.timings.timed("render"):
                if self.rendering is not None:
                    job.email = self.rendering.email(job.digest, subscriber, key=key, to=to,
                                                     manage_generation=job.manage_generation, asked=job.asked)
                else:
                    job.email = self.composer.email(job.digest, subscriber, key=key, to=to,
                                                    manage_generation=job.manage_generation)
                job.asked = None

        def mark() -> None:
            if entry is None:
                return
            # The digests this connection sent before, recorded in the same commit (then forgotten).
            accepted = state.accepted.get(id(sender), [])
            mine = self.ledger.sending(entry.id, self.clock(), owner, accepted=accepted)
            accepted.clear()
            if not mine:
                raise ClaimLost

        papers = len(job.digest.papers)
        try:
            self.rate.wait()
            with self.timings.timed("smtp"):
                sender.send(job.email.wire, envelope=job.email.envelope, before_end=mark)
        except ClaimLost:
            return Outcome(subscriber.email, "skipped", papers, "another worker took it over (this worker's lease "
                           "ran out before it was sent)")
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
            # Recorded with this connection's next `sending` mark, or at the end of the pass: one
            # commit per digest. A crash before then leaves it `sending`, so uncertain and sent
            # once more: as before, at most one message per connection goes twice.
            state.accepted.setdefault(id(sender), []).append(entry)
            return Outcome(subscriber.email, "sent", papers,
                           job.email.subject + (" (sent again: the first try's reply never came)" if job.resend else ""))
        return Outcome(subscriber.email, "test", papers, f"sent to {to}, not recorded")


class Timings:
    """Where a run's time goes (`digest send --timings`): seconds per stage, summed over the
    sending threads, and the ledger's transactions. Ledger time spent planning is counted in
    both `plan` and `plan_ledger` (match = plan - plan_ledger); `smtp` includes the ledger's
    `sending` mark, which happens inside the SMTP exchange."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.local = threading.local()

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        outer = getattr(self.local, "stage", None)
        self.local.stage = stage
        started = time.perf_counter()
        try:
            yield
        finally:
            self.local.stage = outer
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.calls[stage] = self.calls.get(stage, 0) + 1

    def timed_calls(self, target: object, stage: str) -> object:
        """`target` with every method call timed as `stage` (and as plan_ledger while planning)."""
        timings = self

        class Timed:
            def __getattr__(self, name: str) -> object:
                attribute = getattr(target, name)
                if not callable(attribute) or name.startswith("_"):
                    return attribute

                def call(*args: object, **kwargs: object) -> object:
                    started = time.perf_counter()
                    try:
                        return attribute(*args, **kwargs)
                    finally:
                        spent = time.perf_counter() - started
                        timings.add(stage, spent)
                        if getattr(timings.local, "stage", None) == "plan":
                            timings.add("plan_ledger", spent)
                return call

        return Timed()

    def report(self, digests: int) -> dict[str, float]:
        shown = {stage: round(value, 4) for stage, value in self.seconds.items()}
        shown["match"] = round(self.seconds.get("plan", 0.0) - self.seconds.get("plan_ledger", 0.0), 4)
        shown["digests"] = digests
        shown["ledger_calls"] = self.calls.get("ledger", 0)
        return shown


class ClaimLost(Exception):
    """This worker's claim on a digest ended (its lease ran out and another worker took it)."""


class Sending:
    """What the sending threads of one run share: their SMTP connections (one per thread, kept
    from batch to batch), the threads themselves, and how the server has been doing."""

    def __init__(self, sender_factory: Callable[[], SmtpSender], connections: int) -> None:
        self.sender_factory = sender_factory
        self.pool = ThreadPoolExecutor(max_workers=connections) if connections > 1 else None
        self.local = threading.local()
        self.senders: list[SmtpSender] = []
        self.lock = threading.Lock()
        self.connection_failures = 0  # in a row, across the connections
        self.accepted: dict[int, list[Entry]] = {}  # by connection: sent, not yet recorded
        self.fatal: list[SmtpConfigError] = []

    def sender(self) -> SmtpSender:
        if not hasattr(self.local, "sender"):
            self.local.sender = self.sender_factory()
            with self.lock:
                self.senders.append(self.local.sender)
        return self.local.sender

    def map(self, work: Callable[[Job], BaseException | None], jobs: list[Job]) -> list[BaseException | None]:
        return list(self.pool.map(work, jobs)) if self.pool is not None else [work(job) for job in jobs]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        for sender in self.senders:
            sender.close()


class _Planner:
    """A plan made in a thread of its own, so that the connections send the digests it has
    recorded (every 500 subscribers) while it matches the rest."""

    def __init__(self, make: Callable[[], bool]) -> None:
        self.mine = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(make,), name="digest-plan", daemon=True)
        self.thread.start()

    def _run(self, make: Callable[[], bool]) -> None:
        try:
            self.mine = make()
        except BaseException as exc:  # noqa: BLE001 - raised again in the run's own thread
            self.error = exc

    def finished(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> bool:
        """Whether this run made the plan (False: another run held the plan's lock)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.mine


class _Stream:
    """Claimed batches fed to the sending threads as they come: the next batch is claimed while
    this one's digests are still going out, so no connection waits for a claim, or for the
    slowest message of a batch. (One pass; transient failures come back for the retries.)"""

    def __init__(self, pool: ThreadPoolExecutor, work: Callable[[Job], BaseException | None]) -> None:
        self.pool, self.work = pool, work
        self.running: dict[Future[BaseException | None], Job] = {}

    def add(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.running[self.pool.submit(self.work, job)] = job

    def wait(self, leave: int) -> list[tuple[Job, BaseException]]:
        """Until at most `leave` jobs are unfinished; the finished ones that failed."""
        failed = []
        while len(self.running) > leave:
            finished, _ = wait_for(list(self.running), return_when=FIRST_COMPLETED)
            for future in finished:
                job = self.running.pop(future)
                error = future.result()
                if error is not None:
                    failed.append((job, error))
        return failed


PLAN_BATCH = 500  # subscribers matched and recorded per transaction
# The first digests are recorded as soon as this many are matched: several connections start
# sending them while the rest is matched (a run's first message came 3-4 s after its start,
# a second of it waiting for the first 500)
FIRST_RECORDED = 100
PLAN_FRESH = timedelta(minutes=10)  # a pending digest planned this recently belongs to a current plan


_SERVER_DOWN_AFTER = 3  # connection failures in a row that end a pass


class FreshStateError(DigestError):
    """The state database is empty but the configuration has sent before: it was lost."""


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
