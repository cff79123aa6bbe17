#!/usr/bin/env bash
# Regenerates docs/model.md's "Fork vs model agreement" table: `matrix --drivers
# fork,loom,shuttle` over the whole catalog and every preset (the model drivers in the matrix
# model profile, MatrixProfile::default: at most 2 processes x 2 iterations per role, loom
# preemption bound 2 and 5000 executions, with crashes at most 2 processes x 1 iteration;
# shuttle-pct depth 3, 2000 schedules), one row per strategy x scenario.
# A cell agrees when the fork driver observed no anomaly and the model verified, or the fork
# driver observed one and the model gave a counterexample. Bounded: the matrix is stopped after
# 30 minutes (`timeout`); it takes about 4 minutes with a release build on 2 cores.
# Usage: docs/measure/model_agreement.sh [POOLCHECK]   (default: cargo run --release -q -p poolcheck --)
set -euo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-"cargo run --release --locked -q -p poolcheck --"}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# matrix exits 1 when an expectation fails; the table shows which.
timeout 1800 $pc -q matrix --drivers fork,loom,shuttle --format json >"$out" || test $? -eq 1
python3 - "$out" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
cells = {}
for r in runs:
    cells.setdefault((r["strategy"], r["scenario"]), {})[r["driver"]] = r
short = {"torn_read": "torn", "partial_sync_read": "partial", "lost_update": "lost",
         "token_rollback": "rollback", "double_redeem": "double", "stale_token_use": "stale",
         "dead_credential": "dead", "corrupt_store": "corrupt"}
def kinds(r):
    k = [short[a] for a, n in r["anomalies"].items() if n]
    return " ".join(sorted(k)) or "clean"
def model(r):
    if r is None:
        return "-", None
    v = r["verdict"]
    if v == "n/a":
        return "n/a", None
    m = r["stats"]["model"]
    text = f"{v} ({m['schedules']})"
    if v == "counterexample":
        text += " " + kinds(r)
        return text, True
    return text, (False if v == "verified" else None)
print("| strategy | scenario | fork | loom | shuttle-pct | agree |")
print("|---|---|---|---|---|---|")
agree = total = 0
for (st, sc), d in cells.items():
    fork = d.get("fork")
    f = kinds(fork) if fork else "-"
    found = fork is not None and f != "clean"
    row, marks = [], []
    for drv in ("loom", "shuttle-pct"):
        text, flagged = model(d.get(drv))
        row.append(text)
        if flagged is None:
            marks.append("-")
        else:
            total += 1
            ok = flagged == found
            agree += ok
            marks.append("yes" if ok else "**no**")
    print(f"| {st} | {sc} | {f} | {row[0]} | {row[1]} | {' / '.join(marks)} |")
print(f"\n{agree} of {total} decided model cells agree with the fork driver (n/a and inconclusive cells: '-').")
PY
