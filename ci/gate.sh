#!/usr/bin/env bash
# Run the poolcheck gate in a CI job of any repository, and keep its artifacts.
#
#   ci/gate.sh [gate options...]          e.g.  ci/gate.sh --quick
#                                                ci/gate.sh --seeds 10 --shard 2/4
#   ci/gate.sh merge REPORT.json...       combine the shards' report.json into one verdict
#
# Copy this file into your repository. It obtains poolcheck (pinned, and cached between jobs),
# runs `poolcheck gate` on your expectations file (the pools under test are named there:
# `subject = "..."` for your own pool's adapter, `strategy = "..."` for pool-core), and writes
# junit.xml, report.json and summary.md to $POOLCHECK_OUT.
#
# Where poolcheck comes from (the first that is set wins):
#   POOLCHECK_BIN       a poolcheck binary to use as it is
#   POOLCHECK_SRC       a poolcheck checkout to build (`cargo install --path`)
#   POOLCHECK_GIT       a git URL to build from (`cargo install --git`), at POOLCHECK_REV (a
#                       commit, pinned; or a tag)
# A build is installed under $POOLCHECK_CACHE/<rev> (default ~/.cache/poolcheck), so a CI cache
# of that directory keyed on the revision skips it next time.
#
# Other settings:
#   POOLCHECK_EXPECT    the expectations file (default: poolcheck.toml); ignored when the
#                       options name --expect
#   POOLCHECK_OUT       where artifacts go (default: poolcheck-out)
#
# Needs Linux (fork, flock, /proc/locks, /dev/shm), and cargo to build poolcheck.
# Exit code: poolcheck's (0 every expectation held, 1 one failed, 2 bad input or a pool under
# test that did not run).
set -euo pipefail
out="${POOLCHECK_OUT:-poolcheck-out}"
cache="${POOLCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/poolcheck}"

die() { echo "ci/gate.sh: $*" >&2; exit 2; }

# Install poolcheck into $cache/$1 with the cargo install arguments that follow, unless a
# previous job already did.
install() {
  local root="$cache/$1"
  shift
  if ! "$root/bin/poolcheck" --version >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build poolcheck (or set POOLCHECK_BIN)"
    cargo install --locked --root "$root" "$@" >&2
  fi
  echo "$root/bin/poolcheck"
}

if [ -n "${POOLCHECK_BIN:-}" ]; then
  pc="$POOLCHECK_BIN"
elif [ -n "${POOLCHECK_SRC:-}" ]; then
  [ -d "$POOLCHECK_SRC/harness" ] || die "POOLCHECK_SRC=$POOLCHECK_SRC is not a poolcheck checkout"
  rev="$(git -C "$POOLCHECK_SRC" rev-parse HEAD 2>/dev/null || echo local)"
  pc="$(install "src-$rev" --path "$POOLCHECK_SRC/harness")"
elif [ -n "${POOLCHECK_GIT:-}" ]; then
  [ -n "${POOLCHECK_REV:-}" ] || die "set POOLCHECK_REV to the poolcheck commit (or tag) to pin"
  # The workflow template ships placeholders: refuse them before cargo spends minutes on them.
  case "$POOLCHECK_GIT" in
    *"/OWNER/"*) die "POOLCHECK_GIT=$POOLCHECK_GIT is the template's placeholder: set it to the git URL you install poolcheck from (your fork or mirror), or use POOLCHECK_BIN / POOLCHECK_SRC" ;;
  esac
  case "$POOLCHECK_REV" in
    *[!0]*) ;;
    *) die "POOLCHECK_REV=$POOLCHECK_REV is the template's placeholder: set it to the poolcheck commit (or tag) to pin" ;;
  esac
  pc="$(install "git-$POOLCHECK_REV" --git "$POOLCHECK_GIT" --rev "$POOLCHECK_REV" poolcheck)"
elif command -v poolcheck >/dev/null 2>&1; then
  pc="$(command -v poolcheck)"
else
  die "say where poolcheck comes from: POOLCHECK_BIN, POOLCHECK_SRC, or POOLCHECK_GIT with POOLCHECK_REV"
fi
echo "using $("$pc" --version) ($pc)"

mkdir -p "$out"
outputs=(--junit "$out/junit.xml" --json "$out/report.json" --markdown "$out/summary.md")
set +e
if [ "${1:-}" = merge ]; then
  shift
  "$pc" merge "$@" "${outputs[@]}"
else
  expect=()
  case " $* " in
    *" --expect "*|*" --expect="*) ;;
    *)
      file="${POOLCHECK_EXPECT:-poolcheck.toml}"
      [ -f "$file" ] || die "no expectations file $file: write one (see docs/subjects.md) or set POOLCHECK_EXPECT"
      expect=(--expect "$file")
      ;;
  esac
  "$pc" gate "${expect[@]}" "$@" "${outputs[@]}"
fi
code=$?
set -e
echo "poolcheck exited $code; artifacts in $out/"
exit "$code"
