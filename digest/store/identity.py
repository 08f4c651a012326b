"""Who holds a claim: a worker's identity, and whether a holder is known to be gone.

Hostname and pid alone do not name a process: containers share both (every container's first
process is pid 1, often under the same hostname). An identity here adds the kernel's boot id,
the pid namespace and the process's start time, so a holder is judged gone at once only when
it ran in this very pid namespace and that process no longer exists (or the pid was reused).
Anything else — another machine, another container, an older version's identity — is judged
by its lease alone.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

ACTIVE_RUNS: set[str] = set()  # runs of this process that are under way


@cache
def namespace() -> str:
    """This kernel boot and pid namespace ("" where /proc does not say: leases only)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:16]
        pids = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""
    return f"{boot}-{pids}"


def started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command's name


def owner_id(run: str = "") -> str:
    """host:pid:namespace.start.run — readable in `digest status`, unique across containers."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{namespace()}.{started(pid) or ''}.{run}"


def known_gone(owner: str | None) -> bool | None:
    """True: the holder is known to have ended; False: it runs; None: cannot tell (the lease decides)."""
    _host, pid, tag = ((owner or "").split(":", 2) + ["", "", ""])[:3]
    parts = tag.split(".", 2)
    if len(parts) != 3 or not pid.isdigit() or not parts[0] or parts[0] != namespace():
        return None
    start, run = parts[1], parts[2]
    if int(pid) == os.getpid() and start == started(os.getpid()):
        return run not in ACTIVE_RUNS
    return started(int(pid)) != start
