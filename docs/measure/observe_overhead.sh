#!/usr/bin/env bash
# The syscall observer's overhead (README, "Judging an uninstrumented pool"): operations per
# second of the bundled Python pool (subjects/python/pool_subject.py --silent) driven by
# `poolcheck run`, without and with `--observe syscalls`, on a scenario with no pauses: two CLIs
# and a round-robin gateway, 150 operations each on two API keys (every select rewrites the
# store: round robin renumbers priorities). Each figure is the median of RUNS runs
# (stats.operations / stats.seconds of the report; start-up excluded by the start gate).
# Usage: docs/measure/observe_overhead.sh [POOLCHECK] [RUNS]
#   (default: target/release/poolcheck, built if missing; 5 runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-target/release/poolcheck}
runs=${2:-5}
if [ "$pc" = target/release/poolcheck ] && [ ! -x "$pc" ]; then
  cargo build --locked --release -q -p poolcheck
fi
sc=$(mktemp --suffix=.toml)
trap 'rm -f "$sc"' EXIT
cat >"$sc" <<'TOML'
name = "observe-overhead"
description = "no pauses: two CLIs and a round-robin gateway on two API keys"
seed = 1

[issuer]
latency_ms = [0, 0]

[pool]
selection = "round_robin"

[[entry]]
label = "key-a"
auth_type = "api_key"

[[entry]]
label = "key-b"
auth_type = "api_key"

[[role]]
kind = "cli"
count = 2
ops = 150

[[role]]
kind = "gateway"
ops = 150
TOML
py="python3 subjects/python/pool_subject.py --silent"
rate() {
  for _ in $(seq "$runs"); do
    $pc run --format json --scenario "$sc" --subject "$py" "$@" |
      python3 -c 'import json,sys; s=json.load(sys.stdin)["runs"][0]["stats"]; print(s["operations"]/s["seconds"])'
  done | sort -g | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'
}
plain=$(rate)
observed=$(rate --observe syscalls)
echo "ops/s without the observer: $plain"
echo "ops/s with --observe syscalls: $observed"
python3 -c "print('overhead: %.0f%% fewer ops/s' % (100 * (1 - $observed / $plain)))"
