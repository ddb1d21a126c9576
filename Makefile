# dcaas — the two commands a newcomer needs:
#   make run    runs the KMS on embedded defaults (data in ./dcaas-kms)
#   make test   runs the whole test suite (installs and starts what it needs)

GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 5s

.PHONY: all build run test check unit race fips fuzz fuzz-long bench tools

all: build

build:
	$(GO) build -o bin/dcaas ./cmd/dcaas

run: build
	./bin/dcaas kms serve --data-dir dcaas-kms --listen 127.0.0.1:8443

# The whole suite, as CI runs it.
test:
	./scripts/test.sh

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
