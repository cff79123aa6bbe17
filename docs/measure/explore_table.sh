#!/usr/bin/env bash
# Regenerates docs/explore.md's "Measured" table and the README's explore figures: per unsafe
# preset, the first anomaly `explore` finds with its defaults (cases / shrink runs) and the
# `--anomaly double_redeem` search (cases / shrink runs, witness events); then `flock-txn`
# with --cases 10000 for seeds 1-4 (clean, seconds).
# Runtime: about 30 s on the 2-core machine (dev profile); each search bounded by `timeout 300`.
# Usage: docs/measure/explore_table.sh [POOLCHECK]   (default: cargo run -q -p poolcheck --)
set -uo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-"cargo run --locked -q -p poolcheck --"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary='
import json, sys
e = json.load(sys.stdin)["explore"]
f = e["found"]
if f is None:
    print("clean|%s|%.2f" % (e["cases"], e["seconds"]))
else:
    print("%s|%s / %s|%s|%.2f" % (f["anomaly"], e["cases"], f["shrink_runs"], f["events"], e["seconds"]))
'
start=$(date +%s)
echo "| strategy | first anomaly (default) | cases / shrink runs | \`--anomaly double_redeem\`: cases / shrink runs, witness events | seconds (both) |"
echo "|---|---|---|---|---|"
for s in none thread-lock flock batched-persist merge-on-write flock-data fcntl; do
  IFS='|' read -r a cs _ t1 < <(timeout 300 $pc -q explore --strategy "$s" --out "$tmp/a.toml" --force --format json | python3 -c "$summary")
  IFS='|' read -r _ cs2 ev t2 < <(timeout 300 $pc -q explore --strategy "$s" --anomaly double_redeem --out "$tmp/b.toml" --force --format json | python3 -c "$summary")
  echo "| $s | $a | $cs | $cs2, $ev | $t1, $t2 |"
done
echo
echo "| flock-txn, --cases 10000 | result | cases | seconds |"
echo "|---|---|---|---|"
for seed in 1 2 3 4; do
  IFS='|' read -r v n t < <(timeout 300 $pc -q explore --strategy flock-txn --cases 10000 --seed "$seed" --out "$tmp/c.toml" --format json | python3 -c "$summary")
  echo "| seed $seed | $v | $n | $t |"
done
echo "(docs/measure/explore_table.sh: $(( $(date +%s) - start )) s)" >&2
