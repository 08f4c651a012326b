"""`digest run`: the scheduler daemon (APScheduler).

Two jobs: fetch the sources (config `fetch`, e.g. every hour), and every minute send the
digests that are due. What is due comes from the ledger, not from the scheduler's memory,
so a restart loses nothing: a digest missed while the machine slept goes out once when it
wakes (only the latest missed slot, and not at all past `defaults.grace`). Each job never
runs twice at once (max_instances=1), and the ledger's claims keep two daemons apart.
SIGTERM/SIGINT: the message in flight is finished, then the daemon exits. SIGHUP, or a
change to the config file, reloads the configuration without a restart.

Roles (`--role`), for work spread over processes and machines sharing one database:
`scheduler` fetches, plans the due digests and backs up; `worker` sends what is planned;
`web` answers the links; `all` (the default) does everything. Any number of each may run:
one fetch at a time across all of them (a lease in the database), one planner per slot.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Config, load_config
from .deliver.schedule import fetch_trigger
from .deliver.send_run import Delivery, summary
from .errors import ConfigError, DigestError
from .gather.collect import gather
from .store.database import Store, open_store
from .store.files import backup_name, prune_backups
from .store.locks import Locks

log = logging.getLogger("digest.run")

FETCH_LEASE = timedelta(minutes=30)  # a fetcher that died frees the fetch after this (at once on this machine)
WORKER_TICK = 5.0  # seconds between a worker's looks for planned digests
ROLES = ("all", "scheduler", "worker", "web")


class Daemon:
    def __init__(self, config_path: str | None, *, tick: float = 60.0, fetch_first: bool = True,
                 role: str = "all") -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        self.config_path = Path(config_path or os.environ.get("DIGEST_CONFIG") or "subscribers.yaml")
        self.role = role
        self.tick = min(tick, WORKER_TICK) if role == "worker" else tick
        self.fetch_first = fetch_first
        self.stop = threading.Event()
        self.fetching = threading.Lock()  # digests wait for a fetch under way (at start-up, say)
        self.reload_requested = threading.Event()
        self.examples_waiting = False  # some topics' examples wait for the network or for papers: after a fetch
        self.config: Config = load_config(self.config_path, subscribers=False)
        self.mtime = self._mtime()
        self.scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(4)},  # fetch, send and backup never wait for each other
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})

    def _mtime(self) -> float:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return 0.0

    # -- jobs

    def fetch(self) -> None:
        config = self.config
        store = open_store(config)
        try:
            # One fetch at a time across every process sharing the database.
            with Locks(store).held("fetch", datetime.now(UTC), FETCH_LEASE) as mine:
                if not mine:
                    log.info("fetch skipped: another process is fetching")
                    return
                started = datetime.now(UTC)
                with self.fetching:
                    reports = gather(config, store, stop=self.stop)
                if any(report.ok and report.new for report in reports) and not self.stop.is_set():
                    encode_new_papers(store, started)
            for report in reports:
                if report.ok:
                    log.info("fetched %s: %d papers, %d new%s", report.source, report.fetched, report.new,
                             " (not modified)" if report.not_modified else "")
                else:
                    log.warning("fetch %s failed: %s", report.source, report.error)
        finally:
            store.close()
        if self.examples_waiting:  # the network may be back, and the papers to set examples against are in
            self.learn_examples()

    def learn_examples(self) -> None:
        """The topics whose examples changed, retrained (subscribe/examples.py): at start, on a
        reload, and after a fetch while some wait. Never beside a fetch: both ask arXiv, which
        wants one request at a time; the digests due wait for it as for a fetch."""
        from .subscribe.examples import Asking, refresh_everyone

        config = self.config
        try:
            store = open_store(config)
            try:
                with Locks(store).held("examples", datetime.now(UTC), FETCH_LEASE) as mine:
                    if not mine:
                        log.info("examples not refreshed: another process is at it")
                        return
                    with self.fetching:
                        done = refresh_everyone(config, store, datetime.now(UTC),
                                                Asking(config.arxiv_api, stop=self.stop))
                self.examples_waiting = done.waiting > 0
            finally:
                store.close()
        except DigestError as exc:
            self.examples_waiting = True
            log.error("topics' examples not refreshed: %s", exc)

    def dispatch(self) -> None:
        # A fetch under way (at start-up, say) may bring papers for the digests due now: wait for
        # it a little, never longer: a slow or hostile feed must not hold the digests back.
        wait = self.config.fetch_wait.total_seconds()
        if self.fetching.acquire(timeout=wait):
            self.fetching.release()
        else:
            log.warning("a fetch is still under way after %gs: sending with the papers stored so far", wait)
        config = self.config
        store = open_store(config)
        try:
            outcomes = Delivery(config, store, stop=self.stop).run(
                scheduled=True, plan=self.role in ("all", "scheduler"), work=self.role in ("all", "worker"))
            if outcomes:  # (each one was logged as it came, a warning for those not sent)
                log.info("digests: %s", ", ".join(f"{n} {s}" for s, n in sorted(summary(outcomes).items())))
        except DigestError as exc:
            log.error("sending stopped: %s", exc)
        finally:
            store.close()

    def backup(self) -> None:
        """The daily copy of the state (SQLite), the oldest beyond `backups.keep` deleted."""
        config = self.config
        store = open_store(config)
        try:
            # One backup at a time across the processes sharing the database (a scheduler each).
            with Locks(store).held("backup", datetime.now(UTC), FETCH_LEASE) as mine:
                if not mine:
                    log.info("backup skipped: another process is backing up")
                    return
                folder = config.backup_folder()
                target = folder / backup_name(datetime.now(UTC))
                size = store.backup(target)
                gone = prune_backups(folder, "digest-*.db", config.backups.keep)
            log.info("state backed up to %s (%d bytes)%s", target, size,
                     f"; {len(gone)} old backup{'s' * (len(gone) > 1)} removed" if gone else "")
        except DigestError as exc:
            log.error("backup failed: %s", exc)
        finally:
            store.close()

    def _backup_due_now(self) -> bool:
        folder = self.config.backup_folder()
        newest = max((p.stat().st_mtime for p in folder.glob("digest-*.db")), default=None) if folder.is_dir() else None
        return newest is None or datetime.now(UTC).timestamp() - newest > 24 * 3600

    # -- configuration

    def reload(self) -> None:
        try:
            config = load_config(self.config_path, subscribers=False)
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the previous one: %s",
                      "; ".join(str(p) for p in exc.problems))
            return
        changed_fetch = config.fetch != self.config.fetch
        self.config = config
        self._refresh_presets()
        if self.role in ("all", "scheduler"):  # presets or subscribers.yaml may have changed topics' examples
            self.scheduler.add_job(self.learn_examples, id="examples", name="train topics' examples",
                                   replace_existing=True)
        if (centre := getattr(self, "centre", None)) is not None:  # presets and limits as the file says now
            centre.config = config
        if changed_fetch:
            self.scheduler.reschedule_job("fetch", trigger=fetch_trigger(config.fetch))
        count = len(config.subscribers)
        log.info("configuration reloaded: %s, %d source%s", f"{count} subscriber{'s' * (count != 1)} in the file"
                 if config.subscribers_read else "subscribers synced from it when due", len(config.sources),
                 "s" * (len(config.sources) != 1))

    # -- running

    def start(self) -> None:
        now = datetime.now(UTC)
        self._refresh_presets()
        schedules = self.role in ("all", "scheduler")
        # next_run_time=None would add the job paused (APScheduler 3): leave it out to keep the trigger's
        if schedules:
            self.scheduler.add_job(self.fetch, fetch_trigger(self.config.fetch), id="fetch", name="fetch",
                                   **({"next_run_time": now} if self.fetch_first else {}))
            self.scheduler.add_job(self.learn_examples, id="examples", name="train topics' examples")
        if self.role != "web":
            self.scheduler.add_job(self.dispatch, IntervalTrigger(seconds=self.tick, timezone=UTC), id="send",
                                   name="send due digests", next_run_time=now + timedelta(seconds=1))
        if schedules and self.config.backups.keep and self.config.database_url().startswith("sqlite:///"):
            self.scheduler.add_job(self.backup, CronTrigger(hour=3, minute=17, timezone=UTC), id="backup",
                                   name="back up the state", **({"next_run_time": now} if self._backup_due_now() else {}))
        if self.config.listen and self.role in ("all", "web"):  # first: a port in use stops us before anything runs
            self._serve_unsubscribe(self.config.listen)
        elif self.role == "web":
            raise DigestError("`--role web` answers the links on `listen:`, which the configuration does not set",
                              hint="add e.g. `listen: 127.0.0.1:8081` to the configuration")
        self.scheduler.start()
        log.info("running as %s: %s", self.role, {
            "all": f"fetch {self.config.fetch}, due digests checked every {self.tick:g}s",
            "scheduler": f"fetch {self.config.fetch}, due digests planned every {self.tick:g}s",
            "worker": f"planned digests looked for every {self.tick:g}s",
            "web": f"links answered on {self.config.listen}"}[self.role])

    def _serve_unsubscribe(self, address: str) -> None:
        from .store.ledger import Ledger
        from .subscribe.centre import Centre, smtp_send
        from .web.unsubscribe import unsubscribe_server

        store = open_store(self.config)
        secret = store.signing_secret()
        templates = Path(self.config.resolve_local(self.config.templates)) if self.config.templates else None
        # The subscription centre's pages need base_url: their links go out in e-mails.
        self.centre = Centre(self.config, store, secret, smtp_send(self.config)) if self.config.base_url else None
        self.web = unsubscribe_server(address, secret, Ledger(store), list_name=self.config.sender.list_name,
                                      templates=templates, centre=self.centre)
        threading.Thread(target=self.web.serve_forever, name="web", daemon=True).start()
        host, port = self.web.server_address[:2]
        log.info("links answered on http://%s:%d/unsubscribe/…%s", host, port,
                 "; sign-ups on /subscribe" if self.centre and self.config.signups.open else "")
        if self.centre is not None:
            self.scheduler.add_job(self._purge_signups, IntervalTrigger(hours=1), id="purge-signups",
                                   name="purge unconfirmed sign-ups", next_run_time=datetime.now(UTC))

    def _refresh_presets(self) -> None:
        """Subscribers' picked presets as the catalogue has them now (after an edit of it)."""
        from .deliver import roster
        from .store.directory import Directory

        try:
            store = open_store(self.config)
            try:
                roster.refresh_presets(self.config, Directory(store), datetime.now(UTC))
            finally:
                store.close()
        except DigestError as exc:
            log.error("presets not refreshed: %s", exc)

    def _purge_signups(self) -> None:
        if (centre := getattr(self, "centre", None)) is not None and (purged := centre.purge()):
            log.info("purged %d sign-ups older than a week", purged)

    def serve(self) -> None:
        """Run until SIGTERM/SIGINT; reload on SIGHUP or when the config file changes."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        self.start()
        while not self.stop.wait(1.0):
            mtime = self._mtime()
            if self.reload_requested.is_set() or mtime != self.mtime:
                self.reload_requested.clear()
                self.mtime = mtime
                self.reload()
        log.info("stopping" + (": finishing the message in flight" if self.role != "web" else ""))
        self.scheduler.shutdown(wait=True)
        if getattr(self, "web", None) is not None:
            self.web.shutdown()
        log.info("stopped")


def encode_new_papers(store: Store, since: datetime) -> int:
    """The vectors of the papers a fetch brought (match/semantic.py keeps them), made now rather
    than when the next digests are due: a day's listing is about a minute of encoding, which
    would otherwise delay the first described topic's digest. Returns how many papers."""
    from .match import semantic

    if not semantic.available():
        return 0
    clock = time.perf_counter()
    papers = store.papers(since=since)
    semantic.vectors([semantic.paper_text(p.title, p.abstract) for p in papers])
    log.info("%d new papers encoded for closeness in meaning in %.1fs", len(papers), time.perf_counter() - clock)
    return len(papers)
