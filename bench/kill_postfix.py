"""kill -9 of `digest send` at random moments against a real MTA (a private postfix on
loopback, delivering to a Maildir), then a second run to the end: lost and duplicated digests.

    sudo python bench/kill_postfix.py [--trials 30] [--subscribers 20] [--seed 1]

Needs Debian's postfix and root (a private postfix instance). Runs the trials under both
policies for a message whose end of DATA went out without a reply (`smtp.resend_uncertain`):
`once` (the default: nothing lost, at most the message in flight twice, same Message-ID) and
`never` (nothing twice; lost if the MTA had not taken it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postfix import Postfix, available, kill_trials  # noqa: E402
from tests.test_deliver import fetch_samples, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    why = available()
    if why:
        sys.exit(f"cannot run: {why}")
    mta = Postfix().start()
    try:
        with tempfile.TemporaryDirectory() as work:
            fetched = fetch_samples(Path(work) / "fetched")
            emails = [f"reader{n:02d}@example.org" for n in range(args.subscribers)]
            print(f"{args.trials} trials, {args.subscribers} digests each, postfix on 127.0.0.1:{mta.port}")
            for aim in ("random", "sending"):
                for policy in ("once", "never"):
                    text = write(Path(work), mta.port, emails, smtp_extra=f"  resend_uncertain: {policy}\n").read_text()
                    started = time.monotonic()
                    totals = kill_trials(Path(work) / f"{aim}-{policy}", mta, fetched, text, emails,
                                         trials=args.trials, seed=args.seed, aim=aim)
                    print(f"kill at {aim:7} resend_uncertain: {policy:5}  killed mid-run "
                          f"{totals['killed_mid_run']:>3}/{args.trials}  "
                          f"digests {totals['digests']}  lost {totals['lost']}  duplicated {totals['duplicated']}  "
                          f"uncertain sent again {totals['uncertain']}  left unsent {totals['left_unsent']}  "
                          f"other Message-ID {totals['duplicates_with_other_message_id']}  "
                          f"({time.monotonic() - started:.0f} s)")
    finally:
        mta.stop()


if __name__ == "__main__":
    main()
