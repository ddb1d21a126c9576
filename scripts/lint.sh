#!/usr/bin/env bash
# Static analysis with staticcheck (honnef.co/go/tools) at a pinned version.
#
# staticcheck is installed through the Go module proxy into ./bin/tools
# (git-ignored) the first time, and again only when the pin changes. It
# runs on the given packages (default ./...), test files included, and the
# script fails on any finding.
#
#   ./scripts/lint.sh                 the whole module (and the test module
#                                     sidecar/kmsplugin/apiservertest, and
#                                     deploy/helm/charttest)
#   ./scripts/lint.sh ./internal/...  some packages
#
# Bump STATICCHECK_VERSION deliberately: list what the proxy serves with
#   go list -m -versions honnef.co/go/tools
# (v0.8.x is staticcheck 2026.x; its "-version" prints both names).
#
# govulncheck is not run here: it needs the Go vulnerability database,
# which this machine cannot reach. It is a release step; see
# docs/threat-model.md, "Release checks".
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"
tools="$PWD/bin/tools"
bin="$tools/staticcheck"

if ! { [ -x "$bin" ] && "$bin" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; }; then
  echo "lint.sh: installing staticcheck ${STATICCHECK_VERSION} into ${tools}" >&2
  mkdir -p "$tools"
  GOBIN="$tools" GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi

"$bin" -version
if [ $# -eq 0 ]; then
  "$bin" ./...
  # Modules of their own inside the tree (./... stops at them).
  (cd sidecar/kmsplugin/apiservertest && "$bin" ./...)
  (cd deploy/helm/charttest && "$bin" ./...)
else
  "$bin" "$@"
fi
echo "lint.sh: staticcheck found nothing"
