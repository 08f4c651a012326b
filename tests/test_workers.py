"""Many workers on one database: `digest send` processes started together share one plan and
divide it; a worker killed mid-batch leaves its claims to the others when its lease ends. Run
on SQLite and, in .ci/run, on PostgreSQL (the `database` mark)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import load_config
from digest.store import Store
from digest.store.ledger import Ledger

from .smtp_server import SmtpServer
from .test_deliver import digest_cli, fetched, setup  # noqa: F401 - fetched is a fixture

pytestmark = [pytest.mark.clock, pytest.mark.database]


def _send(config, *prefix: str) -> subprocess.Popen[str]:  # noqa: ANN001
    return subprocess.Popen([*prefix, sys.executable, "-m", "digest", "-c", str(config), "send"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _entries(config):  # noqa: ANN001, ANN202
    return Ledger(Store(load_config(config).database_url())).entries()


@pytest.mark.undated
def test_four_senders_started_together_share_one_plan_and_divide_it(tmp_path, fetched):  # noqa: F811
    emails = [f"reader{n:02d}@example.org" for n in range(48)]
    with SmtpServer() as server:
        server.handler.delay = 0.3  # one connection at a time: 14.4 s for all 48
        config = setup(tmp_path, fetched, server.port, emails, extra="workers:\n  batch: 2\n",
                       timeout=10)  # several processes on two busy cores: a slow greeting is not under test
        started = time.monotonic()
        runs = [_send(config) for _ in range(4)]
        results = [run.communicate(timeout=120) for run in runs]
        elapsed = time.monotonic() - started
        assert [run.returncode for run in runs] == [0] * 4, results
        sent = [int(re.search(r"^(\d+) sent", out, re.M).group(1)) for out, _ in results]
        assert sum(sent) == 48 and sum(n > 0 for n in sent) >= 3, sent
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)
        assert len({m["Message-ID"] for m in server.handler.received}) == 48
        entries = _entries(config)
        assert Counter(e.state for e in entries) == Counter({"sent": 48})
        # one plan: each digest matched and recorded once (a second planner would have rematched it)
        assert len({e.created_at for e in entries}) <= 2 and all(e.created_at == e.matched_at for e in entries)
        # Sent sooner than one worker could: one connection at a time spends 47 x 0.3 = 14.1 s
        # between its first message and its last. Timed at the server, from the first message
        # accepted to the last, so that four processes' start-up on two busy cores (seconds,
        # under faketime) is not what is measured.
        span = server.handler.accepted_at[-1] - server.handler.accepted_at[0]
        assert span < 14.1 * 0.6, (span, elapsed)
        # and done, start-up included, before one worker could have sent them all (14.4 s)
        assert elapsed < 14.4, (span, elapsed)


@pytest.mark.skipif(shutil.which("unshare") is None or not hasattr(__import__("os"), "geteuid")
                    or __import__("os").geteuid() != 0, reason="needs root and unshare (a worker in its own "
                    "pid namespace, as in a container)")
@pytest.mark.undated
def test_a_killed_workers_claims_are_taken_over_after_its_lease(tmp_path, fetched):  # noqa: F811
    emails = [f"reader{n:02d}@example.org" for n in range(30)]
    with SmtpServer() as server:
        server.handler.delay = 0.1
        config = setup(tmp_path, fetched, server.port, emails, extra="workers:\n  batch: 2\n  lease: 3s\n",
                       timeout=10)
        # Worker A runs in a pid namespace of its own, as in a container: its pid says nothing
        # here, so only its lease can free what it holds.
        a = _send(config, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL")
        b = _send(config)
        server.wait_for(8, timeout=60)
        a.send_signal(signal.SIGKILL)  # unshare dies, and with it (--kill-child) the worker
        a.wait(timeout=30)
        killed_at = time.monotonic()
        held = [e for e in _entries(config) if e.state in ("claimed", "sending")]
        out, err = b.communicate(timeout=120)
        waited = time.monotonic() - killed_at
        assert b.returncode == 0, err
        assert held, "worker A held nothing when it was killed"
        assert waited >= 1.5  # B waited for A's lease (3 s from its last renewal) before taking over
        first = Counter(str(m["To"]) for m in server.handler.received)
        states = Counter(e.state for e in _entries(config))
        assert set(states) <= {"sent", "uncertain"} and states["uncertain"] <= 1, states
        # What A had in flight is uncertain; the next run sends it once more, with its Message-ID.
        again = digest_cli("send", config=config)
        assert again.returncode == 0, again.stderr
        received = server.handler.received
        got = Counter(str(m["To"]) for m in received)
        assert set(got) == set(emails), got
        twice = [e for e, n in got.items() if n > 1]
        assert len(twice) <= 1 and sum(got.values()) - len(emails) == len(twice), (first, got)
        for e in twice:
            assert len({m["Message-ID"] for m in received if str(m["To"]) == e}) == 1
        assert Counter(e.state for e in _entries(config)) == Counter({"sent": 30})


def test_a_scheduler_plans_and_workers_send(tmp_path, fetched):  # noqa: F811
    """`digest run --role scheduler` plans (and fetches), `--role worker` processes send; the
    scheduler never opens an SMTP connection. (One fetch at a time: tests/test_databases.py.)"""
    emails = [f"reader{n:02d}@example.org" for n in range(12)]
    due = datetime.now(UTC) - timedelta(hours=1)  # the latest slot, an hour ago: due now
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, emails, defaults=f"  schedule: daily {due:%H}:{due:%M}\n",
                       extra="workers:\n  batch: 2\n",
                       timeout=10)  # several processes on two busy cores: a slow greeting is not under test
        logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker1", "worker2")}
        roles = {"scheduler": "scheduler", "worker1": "worker", "worker2": "worker"}
        processes = {}
        try:
            for name, role in roles.items():
                with logs[name].open("w") as out:
                    processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "digest", "-c", str(config), "run", "--role", role, "--tick", "1"],
                        stdout=out, stderr=subprocess.STDOUT)
            server.wait_for(12, timeout=90)
        finally:
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
            for process in processes.values():
                process.wait(timeout=60)
        text = {name: path.read_text() for name, path in logs.items()}
        assert all(p.returncode == 0 for p in processes.values()), text
        assert Counter(str(m["To"]) for m in server.handler.received) == Counter(emails)
        entries = _entries(config)
        senders = Counter(e.claimed_by.split(":")[1] for e in entries)
        workers = {str(processes["worker1"].pid), str(processes["worker2"].pid)}
        assert set(senders) <= workers, (senders, workers)  # only workers sent
        assert len(server.handler.peers) <= 2  # one connection per worker at most
        assert "fetched arxiv" in text["scheduler"] and "Traceback" not in "".join(text.values())
