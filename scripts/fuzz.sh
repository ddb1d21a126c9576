#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for FUZZTIME (default 5s).
# A longer run: FUZZTIME=10m ./scripts/fuzz.sh   (or make fuzz-long)
#
# A target fails the run when the fuzzer finds an input that breaks its
# property (it writes the input under testdata/fuzz/; commit it as a
# regression seed after fixing the bug). The fuzzing engine itself can
# occasionally end a very short run with "context deadline exceeded" and no
# failing input; such a run is retried once.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5s}"
log=$(mktemp)
bins=$(mktemp -d)
trap 'rm -rf "$log" "$bins"' EXIT
cache=$(go env GOCACHE)/fuzz
# One instrumented test binary per package, run once per target in the
# package's directory (where testdata/fuzz is), with the corpus cache
# `go test -fuzz` itself uses: the same run as `go test -fuzz`, without
# linking the binary again for every target.
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  [ -n "$targets" ] || continue
  n=$((${n:-0} + 1))
  bin="$bins/$n.test"
  go test -c -fuzz . -o "$bin" "$pkg"
  for target in $targets; do
    echo "fuzz $pkg $target ($FUZZTIME)"
    for attempt in 1 2; do
      if (cd "$dir" && "$bin" -test.paniconexit0 -test.timeout 10m -test.run '^$' -test.fuzz "^${target}\$" \
            -test.fuzztime "$FUZZTIME" -test.fuzzcachedir "$cache/$pkg") > "$log" 2>&1; then
        break
      fi
      if [ "$attempt" = 2 ] || grep -q "Failing input written to" "$log" || ! grep -q "context deadline exceeded" "$log"; then
        cat "$log"
        exit 1
      fi
      echo "  (the fuzzing engine timed out without a failing input; retrying once)"
    done
  done
done
