#!/usr/bin/env bash
# Regenerates the README's "What it finds (measured)" table: the default matrix (every preset x
# every catalog scenario, fork driver, one run per cell) with its totals.
# Runtime: about 20 s on the 2-core machine (dev profile), bounded by `timeout 600`.
# Usage: docs/measure/matrix_table.sh [POOLCHECK]   (default: cargo run -q -p poolcheck --)
# Exit: the matrix's own (0 every expectation held, 1 one failed).
set -euo pipefail
cd "$(dirname "$0")/../.."
pc=${1:-"cargo run --locked -q -p poolcheck --"}
start=$(date +%s)
timeout 600 $pc -q matrix
echo "(docs/measure/matrix_table.sh: $(( $(date +%s) - start )) s)" >&2
