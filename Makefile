# leaseguard — see README.md.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/leaseguard
PKGS  := ./...
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.PHONY: all build test demo lint postgres fuzz clean

all: lint test build

# The version, commit and build date in the binary (leaseguard version,
# leaseguard_build_info, evidence product.version). The date is the commit's,
# in UTC, so building a commit again gives the same binary. The version is
# the release tag, or without one a Go pseudo-version of the commit. Outside
# git they stay empty and the binary reads Go's build information.
VERSION    ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || \
                TZ=UTC git log -1 --format=v0.0.0-%cd-%h --date=format-local:%Y%m%d%H%M%S 2>/dev/null)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null)
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)

# demo, e2e and bench run the binary this builds.
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/leaseguard

# Tests run against the real local PostgreSQL and in-process brokers.
# The fuzz targets' seed corpora run as ordinary tests here.
test: postgres tools
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	cd deploy/kubernetes/check && $(GO) test -count=1 ./...

# The README's main command: a small Vault workload on local PostgreSQL and
# an embedded JetStream server, start to finish in under a minute.
demo: build postgres
	LEASEGUARD_DATABASE_URL="$(TEST_DATABASE_URL)" ./$(BIN) demo

# gofmt, go vet and staticcheck (its default checks; a pinned release, run
# from the module cache).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./e2e
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) run $(STATICCHECK) -tags e2e ./e2e

postgres:
	@scripts/ensure-postgres.sh

# rsyslog with omkafka and kcat (end-to-end shipping test) and a real
# Alertmanager (alert sink test), installed from Debian when missing; the
# nats-server go.mod pins (deploy/nats test), built once into a cache
# directory outside the repository.
.PHONY: tools
tools:
	@scripts/ensure-tools.sh
	@scripts/ensure-alertmanager.sh
	@scripts/ensure-nats-server.sh >/dev/null

# Longer fuzzing of the audit decoder (not part of make test).
fuzz:
	$(GO) test ./ingest -run XXX -fuzz FuzzDecodeNormalize -fuzztime 60s

clean:
	rm -rf bin

# Throughput, latency and memory against baselines measured in the same run
# (bench/README.md); prints a table, writes bench/results.json, 15–35 minutes.
# make bench BENCHFLAGS=-quick for a one-minute smoke run. Its vault
# scenario runs the Vault binary of scripts/ensure-vault.sh (as make e2e;
# built once if missing); VAULT_BIN=path names another.
VAULT_BIN ?= $$(scripts/ensure-vault.sh || true)
.PHONY: bench
bench: build postgres
	BENCH_VAULT_BIN="$(VAULT_BIN)" $(GO) run ./cmd/leaseguard-bench -leaseguard $(BIN) $(BENCHFLAGS)

# End to end against a real Vault (e2e/, build tag e2e): a dev server whose
# file and socket audit devices feed a real leaseguard process. The Vault
# binary is built once into a cache directory outside the repository
# (scripts/ensure-vault.sh; the first build takes ~15 minutes) and reused.
.PHONY: e2e
e2e: build postgres
	@vault=$$(scripts/ensure-vault.sh) && \
	E2E_VAULT_BIN="$$vault" E2E_LEASEGUARD_BIN="$(CURDIR)/$(BIN)" \
	$(GO) test -tags e2e -count=1 -v -timeout 20m ./e2e/

# Container image (Dockerfile: static binary on distroless static, nonroot).
# Uses docker or podman when one is installed and reaches its engine;
# otherwise says so and stops. The tests check the Dockerfile's build line
# without an engine (deploy/container).
IMAGE   ?= leaseguard:dev
VERSION ?= $$(git describe --tags --always --dirty 2>/dev/null || echo dev)
.PHONY: image
image:
	@engine=$$(command -v docker || command -v podman || true); \
	if [ -z "$$engine" ]; then \
		echo "make image: neither docker nor podman is installed; install one, or build elsewhere with: docker build -t $(IMAGE) ."; exit 1; \
	fi; \
	if ! "$$engine" info >/dev/null 2>&1; then \
		echo "make image: $$engine is installed but cannot reach its engine (daemon not running?); start it, or build elsewhere with: docker build -t $(IMAGE) ."; exit 1; \
	fi; \
	"$$engine" build --build-arg VERSION="$(VERSION)" -t "$(IMAGE)" .

# Fault suite (docs/reliability.md): real leaseguard processes, a
# nats-server, PostgreSQL and Alertmanager, each dependency behind a proxy
# the suite switches (reset, blackhole) or a process it kills. Prints each
# case's figures and a table; exits non-zero if a goal is missed.
# chaos-short is the CI form (hundreds of users, shorter faults).
.PHONY: chaos chaos-short
chaos: build postgres
	@nats=$$(scripts/ensure-nats-server.sh) && \
	$(GO) build -o bin/leaseguard-chaos ./cmd/leaseguard-chaos && \
	bin/leaseguard-chaos -leaseguard $(BIN) -nats-server "$$nats" $(CHAOSFLAGS)

chaos-short: build postgres
	@nats=$$(scripts/ensure-nats-server.sh) && \
	$(GO) build -o bin/leaseguard-chaos ./cmd/leaseguard-chaos && \
	bin/leaseguard-chaos -short -leaseguard $(BIN) -nats-server "$$nats" $(CHAOSFLAGS)
