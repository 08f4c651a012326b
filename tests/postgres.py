"""A PostgreSQL server of the tests' own (Debian's postgresql package: initdb and pg_ctl in a
temporary folder, on a loopback port), and a fresh database per test. Run as root, the server
runs as the `postgres` user (initdb refuses root). `.ci/run` installs the package."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) \
    if Path("/usr/lib/postgresql").is_dir() else None


def available() -> str | None:
    if BIN is None or not (BIN / "initdb").exists():
        return "needs PostgreSQL (apt-get install postgresql; .ci/run does)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "needs psycopg (pip install '.[postgres]')"
    return None


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        self.port = 0
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def start(self) -> Postgres:
        data = self.dir / "data"
        if self.as_root:
            shutil.chown(self.dir, "postgres")
        made = self._run(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-sync")
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stderr}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = self._run(str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "log"),
                            "-w", "start")
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{(self.dir / 'log').read_text()}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not answer")

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of `template`; its URL as a user would write it in `state:`."""
        import psycopg

        name = f"digest_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
