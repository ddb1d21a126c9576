# dcaas — the two commands a newcomer needs:
#   make dev    a KMS and an enrolled sidecar on loopback, ready to call
#   make test   runs the whole test suite (installs and starts what it needs)
# and: make run (the KMS alone, data in ./dcaas-kms), make demo, make bench

GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 5s

.PHONY: all build dev demo run test check unit race fips fuzz fuzz-long bench tools soak

all: build

# The version `dcaas version`, /healthz and dcaas_build_info report.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/dcaas/dcaas/internal/buildinfo.version=$(VERSION) \
           -X github.com/dcaas/dcaas/internal/buildinfo.revision=$(REVISION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/dcaas ./cmd/dcaas

dev: build
	./bin/dcaas dev

demo: build
	./bin/dcaas demo

run: build
	./bin/dcaas kms serve --data-dir dcaas-kms --listen 127.0.0.1:8443

# The whole suite, as CI runs it.
test:
	./scripts/test.sh

# "A year in minutes": the soak test (internal/soak) for SOAK (default
# 5m; make test runs it for 40s), with a summary at the end.
SOAK ?= 5m
soak:
	DCAAS_SOAK_DURATION=$(SOAK) DCAAS_SOAK_SUMMARY=$(CURDIR)/soak-summary.txt \
	  $(GO) test -count=1 -run TestSoak -v -timeout 0 ./internal/soak/
	@echo; cat soak-summary.txt

# Static checks only.
check:
	./scripts/test.sh check

race:
	$(GO) test -race -count=1 $(PKGS)

fips:
	GODEBUG=fips140=on $(GO) test -count=1 $(PKGS)

# Every fuzz target for FUZZTIME each (CI uses a short time).
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# A longer fuzzing run: make fuzz-long FUZZTIME=10m
fuzz-long:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# The side-by-side benchmark of README's performance section.
bench: build
	./bin/dcaas bench --duration 5s --rtt 500us --keys 10000 --plot docs/bench.png
