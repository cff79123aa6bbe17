#!/usr/bin/env bash
# Run the poolcheck gate in a CI job and keep its artifacts.
#
#   ci/gate.sh [gate options...]        e.g.  ci/gate.sh --quick
#                                             ci/gate.sh --expect my-expectations.toml --shard 2/4
#
# Environment:
#   POOLCHECK_SRC   where the poolcheck sources are (default: this script's repository)
#   POOLCHECK_OUT   where to write junit.xml, report.json and summary.md (default: poolcheck-out)
#
# Exit code: the gate's (0 every expectation held, 1 one failed, 2 bad input).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${POOLCHECK_SRC:-$(dirname "$here")}"
out="${POOLCHECK_OUT:-poolcheck-out}"
mkdir -p "$out"

if ! command -v poolcheck >/dev/null 2>&1; then
  cargo install --locked --path "$src/harness"
fi

set +e
poolcheck gate "$@" --junit "$out/junit.xml" --json "$out/report.json" --markdown "$out/summary.md"
code=$?
set -e
echo "poolcheck gate exited $code; artifacts in $out/"
exit "$code"
