"""A private postfix (Debian's, 3.7) on a loopback port, delivering every address of
example.org into one Maildir: a real MTA, to measure what happens to a message whose client
vanished (kill -9) around the end of DATA. Needs root and `apt-get install postfix` (.ci/run
installs it); the tests that use it are skipped otherwise."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

HOME = Path("/tmp/digest-test-postfix")  # listed in /etc/postfix/main.cf's alternate_config_directories


def available() -> str | None:
    """None when a private postfix can run here, else why not."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        return "needs postfix (apt-get install postfix; .ci/run does)"
    if os.geteuid() != 0:
        return "a private postfix needs root"
    return None


class Postfix:
    def __init__(self) -> None:
        self.dir = HOME
        self.config = HOME / "etc"
        self.maildir = HOME / "mail" / "box"
        self.port = 0

    def start(self) -> Postfix:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        for folder in ("etc", "queue", "data", "log", "mail"):
            (self.dir / folder).mkdir(parents=True)
        shutil.chown(self.dir / "data", "postfix")
        shutil.chown(self.dir / "mail", "postfix", "postfix")
        with socket.socket() as probe:  # postfix binds the port itself: taken from a free one
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        master = Path("/etc/postfix/master.cf").read_text()
        master = "\n".join(f"127.0.0.1:{self.port} inet n - n - - smtpd" if line.startswith("smtp ") and " inet " in line
                           else line for line in master.splitlines()) + "\n"
        (self.config / "master.cf").write_text(master)
        uid, gid = shutil._get_uid("postfix"), shutil._get_gid("postfix")  # type: ignore[attr-defined]
        (self.config / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {self.dir / 'queue'}
data_directory = {self.dir / 'data'}
maillog_file = {self.dir / 'log' / 'maillog'}
maillog_file_prefixes = {self.dir / 'log'}
myhostname = mta.example.net
mydestination = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = example.org
virtual_mailbox_base = {self.dir / 'mail'}
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
smtputf8_enable = no
""")
        self._allow_config_directory()
        started = subprocess.run(["postfix", "-c", str(self.config), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stderr}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix did not answer")

    def _allow_config_directory(self) -> None:
        current = subprocess.run(["postconf", "-h", "alternate_config_directories"],
                                 capture_output=True, text=True).stdout.split()
        if str(self.config) not in current:
            subprocess.run(["postconf", "-e", f"alternate_config_directories = {' '.join([*current, str(self.config)])}"],
                           check=True)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)

    def settle(self, timeout: float = 60) -> None:
        """Wait until the queue is empty: everything accepted has been delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queued = [p for p in (self.dir / "queue").glob("*/**/*") if p.is_file()
                      and p.parent.name not in ("pid", "public", "private")
                      and not str(p.relative_to(self.dir / "queue")).startswith(("pid", "public", "private"))]
            if not queued:
                return
            time.sleep(0.2)

    def delivered(self) -> Counter[tuple[str, str]]:
        """(recipient, Message-ID) of every message in the Maildir, counted."""
        found: Counter[tuple[str, str]] = Counter()
        for folder in ("new", "cur"):
            for path in (self.maildir / folder).glob("*") if (self.maildir / folder).is_dir() else []:
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                found[(str(message["To"]), str(message["Message-ID"]))] += 1
        return found


def _wait_for_sending(database: Path, process: subprocess.Popen, skip: int) -> None:
    """Return the instant a digest is in the `sending` state (after `skip` others), or when the run ends."""
    import sqlite3

    deadline = time.monotonic() + 60
    seen: set[int] = set()
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1) as db:
                while process.poll() is None and time.monotonic() < deadline:
                    rows = db.execute("SELECT id FROM digests WHERE state = 'sending'").fetchall()
                    seen |= {r[0] for r in rows}
                    if rows and len(seen) > skip:
                        return
        except sqlite3.OperationalError:  # not created yet, or busy
            time.sleep(0.001)


def kill_trials(work: Path, mta: Postfix, fetched_db: Path, config_text: str, emails: list[str], *, trials: int,
                seed: int = 1, aim: str = "random") -> dict:
    """`digest send` killed (-9), then run again to the end, `trials` times, each on a fresh copy
    of the state; what the MTA delivered, counted per trial. `aim`: "random", a random moment
    of the run; "sending", the instant the ledger says the end of a message is going out (the
    state database watched from here), the worst moment there is."""
    import random
    import sqlite3
    import sys

    rng = random.Random(seed)
    totals = {"trials": trials, "digests": 0, "lost": 0, "duplicated": 0, "uncertain": 0, "left_unsent": 0, "killed_mid_run": 0,
              "duplicates_with_other_message_id": 0}
    for trial in range(trials):
        folder = work / f"trial-{trial}"
        folder.mkdir(parents=True)
        shutil.copy(fetched_db, folder / "digest.db")
        config = folder / "subscribers.yaml"
        config.write_text(config_text, encoding="utf-8")
        for box in ("new", "cur", "tmp"):
            shutil.rmtree(mta.maildir / box, ignore_errors=True)
        process = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "send"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if aim == "sending":
            _wait_for_sending(folder / "digest.db", process, skip=rng.randrange(len(emails)))
        else:
            time.sleep(rng.uniform(0.6, 2.5))  # matching takes ~0.6 s; sending the batch about as long again
        if process.poll() is None:
            totals["killed_mid_run"] += 1
        process.kill()
        process.wait()
        rerun = subprocess.run([sys.executable, "-m", "digest", "-c", str(config), "send"], capture_output=True,
                               text=True, timeout=300)
        totals["uncertain"] += rerun.stdout.count("sent again: the first try's reply never came")
        if rerun.returncode != 0:  # said in the failure's message (what the run reported)
            totals.setdefault("rerun_errors", []).append(rerun.stderr.strip()[-300:])
        mta.settle()
        with sqlite3.connect(folder / "digest.db") as db:
            states = dict(db.execute("SELECT subscriber, state FROM digests").fetchall())
            ids = dict(db.execute("SELECT subscriber, message_id FROM digests").fetchall())
        got = mta.delivered()
        for address in emails:
            copies = [(to, mid) for (to, mid), n in got.items() for _ in range(n) if address in to]
            totals["digests"] += 1
            totals["lost"] += not copies
            totals["duplicated"] += len(copies) > 1
            totals["duplicates_with_other_message_id"] += any(mid != ids.get(address) for _, mid in copies)
            totals["left_unsent"] = totals.get("left_unsent", 0) + (states.get(address) not in ("sent",))
        shutil.rmtree(folder)
    return totals
