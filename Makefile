# Wemesse server. `make run` serves on :9000 with the embedded SQLite
# database; `make test` runs the whole suite, PostgreSQL included.
GO      ?= go
BIN     ?= bin/wemesse
LDFLAGS ?= -s -w

.PHONY: run build test vet fmt-check clean bench-auth

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

# Load test of the signature checks against a freshly built server on
# 127.0.0.1; fails when a target is missed (see cmd/wemesse-bench).
bench-auth:
	$(GO) run ./cmd/wemesse-bench auth
