#!/usr/bin/env bash
# Mutation testing of the core (issue 15): which one-line changes of the product the tests catch.
#
#   scripts/mutation.sh            run mutmut (config: [tool.mutmut] in pyproject.toml), then report
#   scripts/mutation.sh --report   only the report of the last run
#
# Too slow for every CI run (tens of minutes on 2 cores). mutmut keeps its work in ./mutants and
# resumes where it stopped; `mutmut show NAME` shows one mutant, `mutmut browse` all of them.
# The report gives, per module, mutants killed / survived / with no test reaching them / timed
# out, and the survivors by name; scripts/equivalent_mutants.txt lists those judged equivalent
# (the same behaviour as the original), each with its reason, and the report leaves them out.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--report" ]; then
  python -m pip install -q mutmut >/dev/null
  mutmut run || true
fi
python - <<'EOF'
import json
import pathlib
from collections import Counter, defaultdict

equivalent = {}
listed = pathlib.Path("scripts/equivalent_mutants.txt")
if listed.exists():
    for line in listed.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            equivalent[name] = why.strip()

# mutmut's exit codes (mutmut/stats.py): 1 or 3 killed, 0 survived, 5 or 33 no test reached it,
# 24/36/152/-24 timed out (counted as caught: the mutant never finished)
kinds = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 24: "timeout", -24: "timeout",
         36: "timeout", 152: "timeout", None: "not run"}
by_module = defaultdict(Counter)
survivors = defaultdict(list)
for meta in sorted(pathlib.Path("mutants").rglob("*.py.meta")):
    module = str(meta.relative_to("mutants")).removesuffix(".meta")
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        kind = "equivalent" if name in equivalent else kinds.get(code, "suspicious")
        by_module[module][kind] += 1
        if kind in ("survived", "no tests", "suspicious", "not run"):
            survivors[module].append(name)

print(f"{'module':34} {'killed':>7} {'survived':>8} {'no test':>8} {'timeout':>8} {'equiv.':>7} {'score':>6}")
# score: killed (and timed out) among the mutants that are not equivalent
for module, c in by_module.items():
    counted = c["killed"] + c["timeout"] + c["survived"] + c["no tests"]
    score = (c["killed"] + c["timeout"]) / counted if counted else 1.0
    print(f"{module:34} {c['killed']:>7} {c['survived']:>8} {c['no tests']:>8} {c['timeout']:>8} "
          f"{c['equivalent']:>7} {score:>6.1%}")
for module, names in survivors.items():
    print(f"\n{module}: {len(names)} left")
    for name in names:
        print(f"  {name}")
EOF
