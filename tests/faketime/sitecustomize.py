"""Put on PYTHONPATH only for the faketime runs of .ci/run, so every Python process of the
run (pytest and each `python -m digest` it starts) loads it.

Debian 12's libfaketime (0.9.10) cannot run Python's waits as they are: with the monotonic
clock faked, timed lock waits (threading.Event.wait) compute deadlines the kernel never
reaches and hang; with FAKETIME_DONT_FAKE_MONOTONIC=1 those work, but clock_nanosleep on the
monotonic clock, which time.sleep uses, fails with EINVAL. So the run keeps the monotonic
clock real and sleeps through select(), whose time-out is relative. Only the wall clock,
which is what the tests are about, is faked.
"""

import os
import select
import time

if "faketime" in os.environ.get("LD_PRELOAD", ""):
    _monotonic = time.monotonic

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = _monotonic() + seconds
        while (left := deadline - _monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
