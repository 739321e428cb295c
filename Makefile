# Portcullis — make targets. `make test` is what CI runs.
GO        ?= go
BIN       ?= gateway
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/portcullis/portcullis/internal/gateway.Version=$(VERSION)
TEST_BIN  := $(CURDIR)/bin/gateway-test
GOFLAGS_TEST ?= -race -timeout 20m -p 2

.PHONY: build run test test-deps unit e2e bench fuzz lint fmt vet health metrics clean

build: ## static binary ./gateway
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gateway

run: build ## build and run on the embedded defaults
	./$(BIN)

test: test-deps ## install test dependencies, build the binary once, run every test
	$(GO) build -race -o $(TEST_BIN) ./cmd/gateway
	GATEWAY_BIN=$(TEST_BIN) $(GO) test $(GOFLAGS_TEST) ./...
	cd e2e && GATEWAY_BIN=$(TEST_BIN) REPO_ROOT=$(CURDIR) $(GO) test $(GOFLAGS_TEST) ./...

test-deps: ## install what the tests need (once; never from inside tests)
	./scripts/test-deps.sh

unit: ## unit tests only (no end-to-end)
	$(GO) test $(GOFLAGS_TEST) $$($(GO) list ./... | grep -v /test/e2e)

bench: ## Go benchmarks of the hot path
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./internal/...

FUZZTIME ?= 60s
fuzz: ## run every fuzz target for FUZZTIME each (make test runs only their seed corpora)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint: vet ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

health: ## ask a running gateway for /health
	curl -s http://localhost:9777/health

metrics: ## ask a running gateway for /metrics
	curl -s http://localhost:9777/metrics

clean:
	rm -rf $(BIN) bin/
