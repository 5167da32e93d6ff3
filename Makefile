# Wemesse server. `make run` serves on :9000 with the embedded SQLite
# database; `make test` runs the whole suite, PostgreSQL included.
GO      ?= go
BIN     ?= bin/wemesse
LDFLAGS ?= -s -w

.PHONY: run build test vet fmt-check clean bench bench-auth faults fuzz

run:
	$(GO) run ./cmd/wemesse serve

# The same static, CGO-free binary the Dockerfile builds.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="$(LDFLAGS)" -o $(BIN) ./cmd/wemesse

test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin data

# Every load scenario (update, device, users, upload, auth) against a freshly
# built server on 127.0.0.1, on SQLite and on a throwaway PostgreSQL cluster;
# prints the whole table and "K of N targets passed" even when targets are
# missed (-no-fail). BENCHFLAGS adds flags, e.g. BENCHFLAGS=-markdown. See
# BENCHMARKS.md.
bench:
	$(GO) run ./cmd/wemesse-bench all -no-fail $(BENCHFLAGS)

# Load test of the signature checks against a freshly built server on
# 127.0.0.1; fails when a target is missed (see cmd/wemesse-bench).
bench-auth:
	$(GO) run ./cmd/wemesse-bench auth

# Fault injection against real processes on 127.0.0.1: PostgreSQL stopped
# under load, kill -9 and SIGTERM mid-upload, a flood of malformed requests
# (see cmd/wemesse-faults). Needs PostgreSQL 15 server binaries.
faults:
	$(GO) run ./cmd/wemesse-faults

# Every Go fuzz target for FUZZTIME (default 20s) each, one at a time; see
# .ci/fuzz.sh. Plain `make test` runs their seed corpora only.
fuzz:
	bash .ci/fuzz.sh
