# Portcullis — make targets. `make test` is what CI runs.
GO        ?= go
BIN       ?= gateway
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/portcullis/portcullis/internal/gateway.Version=$(VERSION)
TEST_BIN  := $(CURDIR)/bin/gateway-test
GOFLAGS_TEST ?= -race -timeout 20m -p 2

.PHONY: build run test test-deps unit e2e bench fuzz lint vulncheck fmt vet health metrics clean
.PHONY: docker-build docker-up docker-down docker-logs k8s-deploy k8s-status k8s-logs k8s-delete load-test stack
.PHONY: h2spec testssl

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

LINT_TOOLS := $(GO) tool -modfile=$(CURDIR)/tools/lint/go.mod

lint: vet ## gofmt, go vet and staticcheck on both modules
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(LINT_TOOLS) staticcheck ./...
	cd e2e && $(GO) vet ./... && $(LINT_TOOLS) staticcheck ./...

vulncheck: ## govulncheck against the Go vulnerability database (needs https://vuln.go.dev, or GOVULNDB=file:///path)
	$(LINT_TOOLS) govulncheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

# The ops listener (OPS_ADDR, default 127.0.0.1:9778): /metrics and the
# detailed /health live there only. Compose publishes it on 127.0.0.1:9778 too.
OPS_URL ?= http://127.0.0.1:9778

health: ## ask a running gateway for its detailed /health (routes, backends) on OPS_URL
	curl -s $(OPS_URL)/health

metrics: ## ask a running gateway for /metrics on OPS_URL
	curl -s $(OPS_URL)/metrics

# Deployment (docs/deployment.md). No Docker here? `make stack`.
IMAGE   ?= portcullis/gateway
COMPOSE ?= docker-compose
KUBECTL ?= kubectl
# The public listener: what clients reach (see scripts/load-test.sh).
URL     ?= http://127.0.0.1:9777/health

docker-build: ## build the image $(IMAGE):$(VERSION) (static binary on distroless, non-root)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

docker-up: ## start the compose stack: nginx edge, gateway, Redis, Prometheus, Grafana, Jaeger, echo upstreams
	VERSION=$(VERSION) $(COMPOSE) up -d --build

docker-down: ## stop the compose stack
	$(COMPOSE) down

docker-logs: ## follow the gateway's logs in the compose stack
	$(COMPOSE) logs -f gateway

k8s-deploy: ## apply deploy/k8s with kustomize (set the image tag in deploy/k8s/kustomization.yaml)
	$(KUBECTL) apply -k deploy/k8s

k8s-status: ## pods, services, autoscaler, disruption budget and ingress
	$(KUBECTL) -n portcullis get pods,svc,hpa,pdb,ingress,statefulset

k8s-logs: ## follow the gateway's logs in the cluster
	$(KUBECTL) -n portcullis logs -f deployment/portcullis

k8s-delete: ## delete everything deploy/k8s created (Redis's volume claim included)
	$(KUBECTL) delete -k deploy/k8s

load-test: ## wrk against URL (default /health); DURATION, CONNECTIONS, THREADS, HEADER
	./scripts/load-test.sh $(URL)

stack: build ## the compose stack from local binaries on loopback, no Docker; Ctrl-C stops it
	GATEWAY_BIN=$(CURDIR)/$(BIN) ./scripts/stack.sh

# Conformance runs from tools the project did not write (docs/conformance/),
# against bin/gateway on loopback; reports in bin/conformance/. Not part of
# make test: each exits non-zero while a known deviation remains.
h2spec: ## HTTP/2 conformance (h2spec, built once from tools/go.mod) over TLS and over H2C
	$(GO) build -o bin/gateway ./cmd/gateway
	GATEWAY_BIN=$(CURDIR)/bin/gateway ./scripts/conformance.sh h2spec

testssl: ## TLS versions, suites and known vulnerabilities (testssl.sh, installed when missing)
	$(GO) build -o bin/gateway ./cmd/gateway
	GATEWAY_BIN=$(CURDIR)/bin/gateway ./scripts/conformance.sh testssl

clean:
	rm -rf $(BIN) bin/
