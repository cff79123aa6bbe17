#!/usr/bin/env bash
# Regenerates docs/bench.md's figures (and the README's bench targets table) with
# `poolcheck bench`, in one of three modes:
#   quick    `bench --quick`: the "after" column of the `none` at 8 processes table (median ops/s,
#            spread, errors, p50 per fs). About 15 s.
#   targets  the targets run (3 strategies + floor + SQLite, 1/2/4/8 processes, 3 s per
#            repetition, shm and disk): prints the targets table and writes every cell to
#            docs/bench/targets-run.md. 5 x 4 x 2 cells x 3 repetitions x 3 s = 6 min of
#            measurement, about 7 min in all.
#   grid     the full default grid into docs/bench/ (bench.json, bench.md, the SVG plots) and
#            the tmpfs excerpt table of docs/bench.md. 12 x 5 x 2 cells x 3 repetitions x
#            1.5 s = 9 min of measurement, about 10 min in all.
# Each run is bounded by `timeout 1800`. Absolute figures move with the machine's load: read
# ratios within one run.
# Usage: docs/measure/bench_tables.sh quick|targets|grid [POOLCHECK]
#        (default POOLCHECK: cargo run -q -p poolcheck --)
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?usage: bench_tables.sh quick|targets|grid [POOLCHECK]}
pc=${2:-"cargo run --locked -q -p poolcheck --"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
rows() { # bench.json, fs, procs filter (empty: all) -> Markdown rows of docs/bench.md's excerpt
  python3 - "$@" <<'PY'
import json, sys
path, fs, procs = sys.argv[1], sys.argv[2], sys.argv[3]
cells = json.load(open(path))["bench"]["cells"]
names = {"lock=none,scope=io,persist=each,write=rename,refresh=blind": "no lock, rename path"}
print("| subject | procs | ops/s | spread | errors | p50 us | p99 us | p99.9 us | lock wait | refreshes | anomalies |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for c in cells:
    if c["fs"] != fs or (procs and str(c["procs"]) not in procs.split(",")):
        continue
    reps = [r["ops_per_s"] for r in c.get("reps", [])]
    med = c["ops_per_s"]
    spread = "±%.0f%%" % (50 * (max(reps) - min(reps)) / med) if reps and med else "-"
    an = c["anomalies"]
    an = "-" if an is None else (" ".join("%s=%d" % (k, n) for k, n in sorted(an.items()) if n) or "0")
    print("| %s | %d | %.0f%s | %s | %d | %.0f | %.0f | %.0f | %.1f%% | %d | %s |" % (
        names.get(c["subject"], c["subject"]), c["procs"], med, "" if c.get("valid", True) else "!",
        spread, c.get("errors_all_reps", c["errors"]), c["latency_us"]["p50"], c["latency_us"]["p99"],
        c["latency_us"]["p999"], 100 * c["lock_wait_share"], c["refreshes"], an))
PY
}
case "$mode" in
  quick)
    timeout 1800 $pc -q bench --quick --out "$tmp" >/dev/null
    for fs in shm disk; do echo "fs $fs:"; rows "$tmp/bench.json" "$fs" 8; done
    ;;
  targets)
    timeout 1800 $pc -q bench \
      --strategies none,lock=none,scope=io,persist=each,write=rename,refresh=blind,flock-txn \
      --procs 1,2,4,8 --seconds 3 --fs shm,disk --out "$tmp" >/dev/null
    cp "$tmp/bench.md" docs/bench/targets-run.md
    sed -n '/^| target |/,/^$/p' "$tmp/bench.md"
    ;;
  grid)
    timeout 1800 $pc -q bench --out docs/bench >/dev/null
    rows docs/bench/bench.json shm 1,8
    ;;
  *) echo "unknown mode '$mode': quick, targets or grid" >&2; exit 2 ;;
esac
echo "(docs/measure/bench_tables.sh $mode: $(( $(date +%s) - start )) s)" >&2
