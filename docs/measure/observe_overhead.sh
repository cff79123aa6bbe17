#!/usr/bin/env bash
# The syscall observer's overhead (README, "Testing your own pool"): operations per
# second of the bundled Python pool (subjects/python/pool_subject.py --silent) driven by
# `poolcheck run`, without and with `--observe syscalls`, on a scenario with no pauses: two CLIs
# and a round-robin gateway, 150 operations each on two API keys (every select rewrites the
# store: round robin renumbers priorities). Each figure is the median of RUNS runs
# (stats.operations / stats.seconds of the report; start-up excluded by the start gate), and
# the CPU time (user + system, every process of the run, start-up included) per operation. The
# two sides alternate run by run, and the last line gives their ratios (observed / plain).
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
# One run: ops/s (wall clock) and CPU ms per operation (user + system of poolcheck and
# everything it started: less sensitive to a loaded machine than wall time).
once() {
  python3 - "$pc" "$sc" "$py" "$@" <<'PY'
import json, resource, subprocess, sys
pc, sc, py, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
out = subprocess.run(pc.split() + ["run", "--format", "json", "--scenario", sc, "--subject", py]
                     + extra, capture_output=True, text=True, check=False).stdout
s = json.loads(out)["runs"][0]["stats"]
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(s["operations"] / s["seconds"], 1000 * (ru.ru_utime + ru.ru_stime) / s["operations"])
PY
}
# The two sides alternate, run by run, so a change of the machine's load during the
# measurement falls on both.
plain="" observed=""
for _ in $(seq "$runs"); do
  plain+="$(once)"$'\n'
  observed+="$(once --observe syscalls)"$'\n'
done
median() { grep . | sort -g | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
p_ops=$(echo "$plain" | cut -d' ' -f1 | median); p_cpu=$(echo "$plain" | cut -d' ' -f2 | median)
o_ops=$(echo "$observed" | cut -d' ' -f1 | median); o_cpu=$(echo "$observed" | cut -d' ' -f2 | median)
echo "without the observer: $p_ops ops/s, $p_cpu CPU ms/op"
echo "with --observe syscalls: $o_ops ops/s, $o_cpu CPU ms/op"
awk -v a="$p_cpu" -v b="$o_cpu" -v c="$p_ops" -v d="$o_ops" \
  'BEGIN {printf "observed/plain: CPU per op x%.2f, ops/s x%.2f\n", b / a, d / c}'
