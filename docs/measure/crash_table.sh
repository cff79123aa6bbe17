#!/usr/bin/env bash
# Regenerates the README's crash campaign table ("Failure behaviour"): KILLS nemesis kills per
# strategy in `crash-mid-persist`, counting runs with a corrupt store, a dead credential, a
# rollback or a lost update.
# Runtime: 2 min 12 s for KILLS=1000 on the 2-core machine (dev profile); it grows linearly with
# KILLS; bounded by `timeout 1800`.
# Usage: docs/measure/crash_table.sh [KILLS] [POOLCHECK]   (defaults: 1000, cargo run -q -p poolcheck --)
set -euo pipefail
cd "$(dirname "$0")/../.."
kills=${1:-1000}
pc=${2:-"cargo run --locked -q -p poolcheck --"}
start=$(date +%s)
timeout 1800 $pc -q crash --kills "$kills" \
  --strategies flock-txn,none,flock,merge-on-write,batched-persist
echo "(docs/measure/crash_table.sh: $(( $(date +%s) - start )) s)" >&2
