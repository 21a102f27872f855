# orderstream: `make run` serves on :8080, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
# Root needs no sudo (CI, these machines); a laptop user gets asked.
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Plain `make` lists the targets (the fragments below bring rules of their own).
.DEFAULT_GOAL := help

# Parts add their own checks to TEST_TARGETS and their binaries' rules.
TEST_TARGETS :=
-include functions/lambda.mk
-include loadtest/loadtest.mk
-include deploy/deploy.mk

.PHONY: run test test-fast test-go bench build fuzz fuzz-short fmt-check vet deps redis-server chromium nginx screenshot help nodejs

help:
	@echo "make run     serve on :8080 (REDIS_URL=redis://... make run for the Redis broker)"
	@echo "make test    every test, with -race, fuzzing, cfn-lint and a k6 smoke run (installs redis-server and chromium when missing)"
	@echo "make test-fast  the unit tests with -race, about a minute warm: -short skips the system tests (nginx, Chromium, Node, Redis Cluster, built Lambda bootstraps, the SAM transform)"
	@echo "make bench   benchmarks of the hot paths"
	@echo "make build   binaries into bin/"
	@echo "make fuzz    every fuzzer for FUZZTIME (default 1m) each; make test runs each for FUZZTIME_SHORT (10000x)"
	@echo "make screenshot  docs/page.png from the browser test"
	@echo "make package     the Lambda zips in dist/ (functions/lambda.mk)"
	@echo "make loadtest    the k6 suite against a local server (loadtest/loadtest.mk)"
	@echo "make test-cluster-faults  Redis Cluster failover and resharding under load (about a minute)"
	@echo "make smoke TARGET=https://...  one stream against a deployment: first byte, event delays, held back or not"
	@echo "make image       the container image: dist/image (OCI layout) and dist/orderstream-image.tar; REGISTRY=... pushes it (deploy/README.md)"
	@echo "make loadtest-rolling  15,000 streams through nginx over three instances restarted in turn and one killed"

run:
	$(GO) run ./local

# Static (no libc: the image's base is empty) and without build paths; the
# image (deploy/image) compiles the same way, and its test holds this rule to it.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/orderstream ./local

test: deps fmt-check vet test-go fuzz-short $(TEST_TARGETS)

# The fast inner loop: -short skips the system tests (a real nginx,
# Chromium, Node, Redis Cluster, the built bootstraps under a fake Runtime
# API or aws-lambda-rie, the SAM transform), each with a skip message (go
# test -v shows them). Results are cached: a package unchanged since it last
# passed is not run again. make test passes no -short and skips nothing.
test-fast:
	$(GO) test -race -short ./...
	cd deploy && $(GO) test -short ./...
	@echo "test-fast: system tests skipped by -short (go test -short -v ./... | grep SKIP lists them); make test runs everything"

# Tests keep what they save with t.ArtifactDir (the browser test's
# screenshot) under $(ARTIFACTS)/_artifacts; each logs its path.
ARTIFACTS ?= $(CURDIR)/test-artifacts
test-go:
	@mkdir -p $(ARTIFACTS)
	$(GO) test -race -count=1 -timeout 15m -artifacts -outputdir $(ARTIFACTS) ./...
	@# Stack sizes hold only without -race (race builds grow every frame).
	$(GO) test -count=1 -run '^TestIdle(InHandler|Wrapped)StreamStackStaysSmall$$' ./shared/httpapi/ ./shared/socketstreams/
	@# The vanished-client tests need network namespaces (root, ip(8)): say so if they were skipped.
	@$(GO) test -count=1 -v -run '^TestVanishedClientEndsWithinPeerTimeout$$/^$$' ./shared/sockets/ ./local/ | grep -B1 -e '--- SKIP' || true

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./shared/...

# Every fuzzer in the module, one after another (go test -fuzz takes one at
# a time): FUZZTIME each for `make fuzz`, FUZZTIME_SHORT each in `make test`.
# The short pass counts executions, not seconds: Go 1.26's coordinator can
# report a spurious "context deadline exceeded" when a -fuzztime duration
# ends while a starved worker is mid-call (go.dev/issue/75804, fixed in 1.27),
# and a count has no deadline to race. 10000 calls take a few seconds each.
FUZZTIME ?= 1m
FUZZTIME_SHORT ?= 10000x
define run-fuzzers
	@set -e; for dir in $$($(GO) list -f '{{.Dir}}' ./...); do \
		for f in $$(grep -h '^func Fuzz' $$dir/*_test.go 2>/dev/null | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $${dir#$(CURDIR)/} $$f ($(1))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(1) $$dir; \
		done; \
	done
endef

fuzz:
	$(call run-fuzzers,$(FUZZTIME))

fuzz-short:
	$(call run-fuzzers,$(FUZZTIME_SHORT))

deps: redis-server chromium nginx nodejs

# The Redis broker's tests start a real redis-server (Debian's package).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server is missing: installing Debian's package"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; \
	}
	@command -v redis-server >/dev/null 2>&1 || { echo "could not install redis-server: apt-get install redis-server"; exit 1; }

# The page's browser test (local/browser_test.go) drives a real headless
# Chromium (Debian's package) through chromedp.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "chromium is missing: installing Debian's package"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	}
	@command -v chromium >/dev/null 2>&1 || { echo "could not install chromium: apt-get install chromium"; exit 1; }

# The proxy test (local/nginx_test.go) runs deploy/nginx's configuration in a
# real nginx (Debian's package; the test starts its own, the service is not used).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "nginx is missing: installing Debian's package"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx >/dev/null; \
	}
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "could not install nginx: apt-get install nginx"; exit 1; }

# FLUSH_PADDING's decoder test (local/padding_test.go) runs the npm
# eventsource package under Node (Debian's packages); the test installs the
# package itself into bin/npm.
nodejs:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
		echo "node or npm is missing: installing Debian's packages"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; \
	}
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "could not install node and npm: apt-get install nodejs npm"; exit 1; }

# docs/page.png, the README's picture of the page, from the browser test.
screenshot: deps
	$(GO) test -count=1 -run '^TestPageInBrowser$$' ./local -update-docs-screenshot

# Redis Cluster fault runs (issue 11): a master SIGKILLed and slots resharded
# while orders are published and watched, on a real cluster of six
# redis-servers. Too slow for every `make test` (about a minute).
.PHONY: test-cluster-faults
test-cluster-faults: redis-server
	$(GO) test -race -count=1 -tags clusterfaults -run 'TestRedisCluster(Failover|Reshard)' -v ./shared/broker/ ./local/
