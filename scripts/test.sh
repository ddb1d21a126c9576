#!/usr/bin/env bash
# The whole test suite: static checks, unit and end-to-end tests with the
# race detector, the same tests in FIPS 140-3 mode, and a short fuzz run.
# It installs and starts whatever the tests need by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long the one before it took, in wall-clock seconds and
# in CPU seconds of the processes it ran (user + system): CPU well under
# cores × wall means the step waits (on child processes, fsync, timers),
# CPU near it means the step is bound by the machine's cores.
started=$SECONDS
last=$SECONDS
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu=0
cpu_now() { # sets cpu: CPU seconds of every child process so far
  times > "$times_file"
  cpu=$(awk 'NR==2{n=split($0,f," "); t=0; for(i=1;i<=n;i++){split(f[i],p,"m"); sub("s","",p[2]); t+=p[1]*60+p[2]}; printf "%d", t}' "$times_file")
}
step() {
  cpu_now
  if [ -n "${current:-}" ]; then
    printf '=== %s: %ds (%d CPU-s on %d cores)\n' "$current" $((SECONDS - last)) $((cpu - last_cpu)) "$(nproc)"
  fi
  current=$*
  last=$SECONDS
  last_cpu=$cpu
  printf '\n=== %s (at %ds)\n' "$*" $((SECONDS - started))
}

step "dependencies"
./scripts/deps.sh

step "toolchain"
go version

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go mod tidy -diff"
# go.mod and go.sum must say exactly what the code needs, in every module.
go mod tidy -diff
(cd sidecar/kmsplugin/apiservertest && go mod tidy -diff)
(cd deploy/helm/charttest && go mod tidy -diff)

step "go vet"
go vet ./...
(cd sidecar/kmsplugin/apiservertest && go vet ./...)
(cd deploy/helm/charttest && go vet ./...)

step "staticcheck"
./scripts/lint.sh

if [ "${1:-}" = "check" ]; then exit 0; fi

step "README walkthrough"
# README.md's walkthrough, pasted as written, against a freshly built dcaas.
./scripts/walkthrough.sh

# The packages that run the dcaas binary (cmd/dcaas, internal/e2e,
# failover, soak) share one build of it per pass instead of each linking
# its own (internal/e2e.PrebuiltEnv), and the packages that use PostgreSQL
# share one throwaway cluster for the whole run, each test with a database
# of its own (internal/store/pgtest), instead of one cluster per package
# and pass. DCAAS_TEST_POSTGRES_DSN or DCAAS_SKIP_POSTGRES=1 set by the
# caller are kept.
# One test package more than cores: most end-to-end tests wait on child
# processes, fsync or the network part of the time, and another package
# fills those waits.
jobs=$(( $(nproc) + 1 ))
scratch=$(mktemp -d)
bins=$scratch/bin
pg=
cleanup() {
  rm -f "$times_file"
  if [ -n "$pg" ]; then ./scripts/postgres.sh stop "$pg" || true; rm -rf "$pg"; fi
  rm -rf "$scratch"
}
trap cleanup EXIT
if [ -z "${DCAAS_TEST_POSTGRES_DSN:-}" ] && [ "${DCAAS_SKIP_POSTGRES:-}" != 1 ]; then
  pg=$(mktemp -d) # its own: the server's user must be able to enter it
  DCAAS_TEST_POSTGRES_DSN=$(./scripts/postgres.sh start "$pg")
  export DCAAS_TEST_POSTGRES_DSN
fi

step "go test -race"
go build -race -o "$bins/race/dcaas" ./cmd/dcaas
DCAAS_E2E_BINARY="$bins/race/dcaas" go test -race -count=1 -p "$jobs" -timeout 30m ./...
# A module of its own (k8s.io/apiserver stays out of dcaas's requirements).
(cd sidecar/kmsplugin/apiservertest && go test -race -count=1 ./...)
# The Helm chart rendered with Helm's Go packages and checked against the
# Kubernetes and Prometheus operator API types; the Dockerfiles' base images
# pinned by digest. Once: it runs no concurrent code of dcaas's.
(cd deploy/helm/charttest && go test -count=1 ./...)

step "go test (GODEBUG=fips140=on)"
go build -o "$bins/plain/dcaas" ./cmd/dcaas
GODEBUG=fips140=on DCAAS_E2E_BINARY="$bins/plain/dcaas" go test -count=1 -p "$jobs" -timeout 30m ./...
(cd sidecar/kmsplugin/apiservertest && GODEBUG=fips140=on go test -count=1 ./...)

step "fuzz (short)"
FUZZTIME="${FUZZTIME:-5s}" ./scripts/fuzz.sh

step "all tests passed"
