"""`digest run` as a process: it fetches and says so, reloads a changed configuration
without a restart, and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from .smtp_server import SmtpServer
from .test_deliver import fetched, setup  # noqa: F401 - the fixture

pytestmark = [pytest.mark.clock, pytest.mark.database]  # also under faketime, and on PostgreSQL (.ci/run)


def test_run_fetches_reloads_and_stops(tmp_path, fetched):  # noqa: F811
    now = datetime.now(UTC)
    later, earlier = now + timedelta(hours=3), now - timedelta(hours=1)
    with SmtpServer() as server:
        config = setup(tmp_path, fetched, server.port, ["a@example.org", "due@example.org"],
                       defaults=f"  schedule: daily {later:%H}:{later:%M}\n")  # not due: nothing is sent to a@
        # due@ was due an hour ago: its digest shows the send job ran
        config.write_text(config.read_text().replace(
            "  - email: due@example.org\n", f"  - email: due@example.org\n    schedule: daily {earlier:%H}:{earlier:%M}\n"))
        log_file = tmp_path / "run.log"
        with log_file.open("w") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "digest", "-c", str(config), "run", "--tick", "1"],
                                      stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while "fetched hf" not in log_file.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                text = config.read_text()
                config.write_text(text + "  - email: b@example.org\n    topics: [{name: t, keywords: [LLM]}]\n")
                deadline = time.monotonic() + 30
                while "configuration reloaded: 3 subscribers" not in log_file.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                config.write_text(text.replace("subscribers:", "subscribers: [oops", 1))  # broken: kept the old one
                daemon.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while "not reloaded" not in log_file.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                server.wait_for(1, timeout=60)  # the send job ran: due@'s digest
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        output = log_file.read_text()
        assert daemon.returncode == 0, output
        assert "fetched arxiv: 390 papers" in output and "fetched hf" in output
        assert "configuration reloaded: 3 subscribers" in output
        assert "configuration not reloaded, keeping the previous one" in output
        assert "stopped" in output and "Traceback" not in output
        assert [str(m["To"]) for m in server.handler.received] == ["due@example.org"]  # a@ was not due
