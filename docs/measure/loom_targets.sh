#!/usr/bin/env bash
# Measures issue #18's loom targets (docs/model.md, "Before / after" and "Crash states"): one
# `poolcheck model --checker loom ... --format json` per row, each bounded by `timeout T`
# (default 120; a row stopped there reads `timeout T`). Prints a Markdown row each: the
# arguments, the verdict, executions explored (`stats.model.schedules`), seconds
# (`stats.seconds`) and the replay handle of a counterexample. A binary without
# `--no-pause-yields` (before it existed), or without `--preemption-bound none` (before
# 2026-12-07), reads `exit 2` in those rows.
# Usage: docs/measure/loom_targets.sh POOLCHECK [T]   (use a release build for the targets)
set -uo pipefail
cd "$(dirname "$0")/../.."
pc=${1:?usage: loom_targets.sh POOLCHECK [TIMEOUT_S]}
t=${2:-120}
crash=docs/measure/crash-refresh-2x1.toml
unsafe='lock=flock,scope=op,persist=txn,refresh=adopt,write='
rows=(
  "--strategy flock-txn --scenario refresh-race --procs 2 --ops 2"
  "--strategy flock-txn --scenario refresh-race --procs 2 --ops 2 --preemption-bound 3"
  "--strategy flock-txn --scenario refresh-race --procs 2 --ops 2 --preemption-bound none"
  "--strategy flock-txn --scenario refresh-race --procs 3 --ops 1 --preemption-bound 3"
  "--strategy flock-txn --scenario refresh-race --procs 2 --ops 2 --preemption-bound none --no-pause-yields"
  "--strategy flock-txn --scenario refresh-race --procs 3 --ops 1 --preemption-bound 3 --no-pause-yields"
  "--strategy flock-txn --scenario $crash"
  "--strategy ${unsafe}in-place --scenario $crash"
  "--strategy ${unsafe}rename-nofsync --scenario $crash"
  "--strategy ${unsafe}rename-nodirsync --scenario $crash"
)
echo "| \`poolcheck model --checker loom\` ARGS | verdict | executions | s | replay |"
echo "|---|---|---|---|---|"
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  out=$(timeout "$t" "$pc" -q model --checker loom $r --format json 2>/dev/null)
  code=$?
  if [ $code -eq 124 ]; then
    echo "| \`$r\` | timeout $t | | | |"
    continue
  fi
  if [ -z "$out" ]; then
    echo "| \`$r\` | exit $code | | | |"
    continue
  fi
  printf '%s' "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)["runs"][0]
m = r["stats"]["model"]
print("| `%s` | %s | %s | %.2f | %s |" % (sys.argv[1], r["verdict"], m["schedules"], r["stats"]["seconds"], m.get("replay") or ""))
' "$r" || echo "| \`$r\` | exit $code | | | |"
done
