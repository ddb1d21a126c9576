#!/usr/bin/env bash
# Runs README.md's walkthrough exactly as written: every ```sh block from the
# heading "## Walkthrough" up to the next "## " heading, in order, in one
# bash with -e and pipefail (a failing command stops it), against the
# bin/dcaas that `make build` makes. The KMS listens on a free port
# (KMS_PORT), the walkthrough's scratch directory is made under a temporary
# TMPDIR, and whatever the walkthrough started is stopped at the end, even
# when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

for tool in curl jq openssl; do
  command -v "$tool" >/dev/null || { echo "walkthrough: needs $tool" >&2; exit 1; }
done
go build -o bin/dcaas ./cmd/dcaas    # the walkthrough runs the dcaas of this tree

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The blocks, in order.
awk '
  /^## / { inside = ($0 ~ /^## Walkthrough/) ; next }
  inside && /^```sh$/ { code = 1; next }
  inside && /^```$/ && code { code = 0; print ""; next }
  code { print }
' README.md > "$scratch/walkthrough.sh"
if ! grep -q 'dcaas kms serve' "$scratch/walkthrough.sh"; then
  echo "walkthrough: no sh blocks found under \"## Walkthrough\" in README.md" >&2
  exit 1
fi

# A free port for the KMS: the first that nothing listens on.
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "walkthrough: no free port" >&2; exit 1; }

mkdir "$scratch/tmp"
before=$(git status --porcelain --untracked-files=all 2>/dev/null || true)
start=$(date +%s)
# The prelude stops every background job the walkthrough left running when
# it exits, however it exits.
if ! (cd "$root" && TMPDIR="$scratch/tmp" KMS_PORT=$port bash -c '
  set -eo pipefail
  trap '\''echo "walkthrough: failed at line $LINENO of the extracted blocks: $BASH_COMMAND" >&2'\'' ERR
  trap '\''jobs -p | tac | xargs -r kill 2>/dev/null; wait'\'' EXIT   # the sidecar before the KMS
  source "$1"
' walkthrough "$scratch/walkthrough.sh" > "$scratch/out.txt" 2>&1); then
  cat "$scratch/out.txt"
  for log in "$scratch"/tmp/*/kms.log "$scratch"/tmp/*/sidecar.log; do
    [ -f "$log" ] && { echo "--- $log (last 20 lines)"; tail -20 "$log"; }
  done
  echo "walkthrough: FAILED (its output, then the KMS's and the sidecar's logs, are above)" >&2
  exit 1
fi
if [ -n "$(ls -A "$scratch/tmp")" ]; then
  echo "walkthrough: left files behind in its scratch directory:" >&2; ls -la "$scratch/tmp" >&2
  exit 1
fi
after=$(git status --porcelain --untracked-files=all 2>/dev/null || true)
if [ "$before" != "$after" ]; then
  echo "walkthrough: changed files in the repository:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
[ -n "${WALKTHROUGH_VERBOSE:-}" ] && cat "$scratch/out.txt"
echo "walkthrough: ok ($(($(date +%s) - start)) s, KMS on port $port)"
