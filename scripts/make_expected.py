"""Write tests/data/realworld/<capture>.expected.json: what each capture must parse into.

Run after reviewing a parser change on purpose: `python scripts/make_expected.py`.
"""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_realworld import CAPTURES, expected_of, parse_capture  # noqa: E402

for name in CAPTURES:
    listing = parse_capture(name, datetime(2026, 11, 22, tzinfo=UTC))
    out = Path("tests/data/realworld") / f"{name}.expected.json"
    out.write_text(json.dumps(expected_of(listing), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(out, len(listing.papers))
