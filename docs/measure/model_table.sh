#!/usr/bin/env bash
# Regenerates the model-checking tables: the README's "Model checking" table and docs/model.md's
# measured rows (`refresh-race`, 2 CLI processes x 2 iterations unless a row says otherwise).
# One `poolcheck model ... --format json` per row; prints a Markdown row each: the command, the
# verdict, executions explored (`stats.model.schedules`) and seconds (`stats.seconds`).
# Runtime: about 1 min on the 2-core machine (dev profile); each row bounded by `timeout 120`
# (a row stopped there reads `timeout 120`).
# Usage: docs/measure/model_table.sh [POOLCHECK]   (default: cargo run -q -p poolcheck --)
set -uo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-"cargo run --locked -q -p poolcheck --"}
rows=(
  "--checker loom --strategy flock-txn --procs 2 --preemption-bound 1"
  "--checker loom --strategy flock-txn --procs 2"
  "--checker loom --strategy flock-txn --procs 2 --preemption-bound 3"
  "--checker loom --strategy flock-txn --procs 2 --preemption-bound none --no-pause-yields"
  "--checker loom --strategy none --procs 2"
  "--checker loom --strategy thread-lock --procs 2"
  "--checker loom --strategy flock-data --procs 2"
  "--checker loom --strategy fcntl --procs 2"
  "--checker shuttle-pct --strategy flock-txn --procs 2"
  "--checker shuttle-pct --strategy flock-txn --procs 2 --iterations 5000"
  "--checker shuttle-pct --strategy flock-txn --procs 4"
  "--checker shuttle-pct --strategy none --procs 2"
  "--checker shuttle-pct --strategy flock-data --procs 2"
  "--checker shuttle-pct --strategy fcntl --procs 2"
  "--checker shuttle-random --strategy flock-txn --procs 2"
  "--checker shuttle-random --strategy none --procs 2"
  "--checker shuttle-dfs --strategy flock-txn --procs 2 --ops 1 --iterations 20000"
)
echo "| command | verdict | schedules | seconds | anomalies |"
echo "|---|---|---|---|---|"
start=$(date +%s)
for r in "${rows[@]}"; do
  cmd="poolcheck model $r --scenario refresh-race"
  # shellcheck disable=SC2086
  out=$(timeout 120 $pc -q model $r --scenario refresh-race --format json 2>/dev/null)
  code=$?
  if [ $code -eq 124 ]; then
    echo "| \`$cmd\` | timeout 120 | | | |"
    continue
  fi
  printf '%s' "$out" | python3 -c '
import json, sys
cmd = sys.argv[1]
r = json.load(sys.stdin)["runs"][0]
found = ", ".join(k for k, n in sorted(r["anomalies"].items()) if n)
print("| `%s` | %s | %s | %.2f | %s |" % (cmd, r["verdict"], r["stats"]["model"]["schedules"], r["stats"]["seconds"], found))
' "$cmd" || echo "| \`$cmd\` | exit $code | | | |"
done
echo "(docs/measure/model_table.sh: $(( $(date +%s) - start )) s)" >&2
