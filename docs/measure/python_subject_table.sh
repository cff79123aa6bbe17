#!/usr/bin/env bash
# Regenerates the README's "Python mode ~ preset" table: every mode of the bundled Python pool
# (subjects/python/pool_subject.py) as a `matrix --subject` row beside its Rust preset, on the
# catalog scenarios without a nemesis, one run per cell.
# Usage: docs/measure/python_subject_table.sh [POOLCHECK]   (default: cargo run -q -p poolcheck --)
set -euo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-"cargo run --locked -q -p poolcheck --"}
py="python3 subjects/python/pool_subject.py"
$pc matrix --format markdown \
  --strategies thread-lock,flock,batched-persist,merge-on-write,upstream-main,flock-txn \
  --scenarios seed-8040,refresh-race,lost-update,cooldown-erasure,external-cli \
  --subject "as-of-8040=$py" \
  --subject "flock-per-write=$py --flock-per-write" \
  --subject "batched=$py --batched" \
  --subject "merge=$py --merge" \
  --subject "py-upstream-main=$py --upstream-main" \
  --subject "serialized-refresh=$py --serialized-refresh" \
  --subject "all-fixes=$py --merge --batched --serialized-refresh"
