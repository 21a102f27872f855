# The k6 load suite (loadtest/, its own Go module: k6 is AGPL-3.0 and never
# links into the service). Included by the root Makefile.
#
#   make loadtest            the suite at laptop size against a local server
#   TARGET=https://<function-url> make loadtest   the same against a deployment
#   make loadtest-baseline   orderstream against the raw fan-out server
#   make loadtest-figures    issue 19's table and the load figures of docs/performance.md in one run:
#                            orderstream and three raw forms in the contract's rounds (figures.md, charts)
#   make loadtest-scale      100,000 streams over several instances sharing a redis-server
#   make loadtest-rolling    15,000 streams through nginx over three instances, restarted in turn and one killed
#   make loadtest-smoke      a few hundred streams, and the figures harness at 300 (part of make test)
#   make smoke TARGET=https://<StreamUrl>/   one stream against a deployment: first byte,
#                            each event's delay, and whether events are held back (cmd/smoke;
#                            its tests run it against the local server in make test)
#
# Binaries go to loadtest/bin/ (k6, baseline, charts, and the server under
# test), results to loadtest/results/<run>/.

LOADTEST     := $(CURDIR)/loadtest
LOADTEST_BIN := $(LOADTEST)/bin

TEST_TARGETS += loadtest-test loadtest-smoke

.PHONY: smoke loadtest loadtest-rolling loadtest-smoke loadtest-baseline loadtest-figures loadtest-scale loadtest-build loadtest-test jq

# go build is incremental: after the first k6 build (minutes on two busy
# cores) this takes seconds, so it runs every time rather than guessing staleness.
# run.sh reads k6's verdicts from its JSON summaries with jq (Debian's package).
jq:
	@command -v jq >/dev/null 2>&1 || { \
		echo "jq is missing: installing Debian's package"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq jq >/dev/null; \
	}
	@command -v jq >/dev/null 2>&1 || { echo "could not install jq: apt-get install jq"; exit 1; }

loadtest-build: jq
	cd $(LOADTEST) && $(GO) build -o bin/k6 ./cmd/k6 && $(GO) build -o bin/baseline ./baseline && \
		$(GO) build -o bin/charts ./cmd/charts
	$(GO) build -o $(LOADTEST_BIN)/orderstream ./local

# The loadtest module's own checks (the root's go vet/test do not reach a
# nested module).
loadtest-test:
	cd $(LOADTEST) && $(GO) vet ./... && $(GO) test -race -count=1 ./...

# SMOKE_FLAGS passes more, e.g. SMOKE_FLAGS="-gap 5s -token $$TOKEN".
smoke:
	@test -n "$(TARGET)" || { echo "make smoke needs TARGET=https://... (the stack's StreamUrl output)"; exit 2; }
	cd $(LOADTEST) && $(GO) run ./cmd/smoke -target "$(TARGET)" $(SMOKE_FLAGS)

loadtest-smoke: loadtest-build
	$(LOADTEST)/run.sh smoke

loadtest: loadtest-build
	$(LOADTEST)/run.sh laptop

loadtest-baseline: loadtest-build
	$(LOADTEST)/run.sh baseline

loadtest-figures: loadtest-build
	$(LOADTEST)/run.sh figures

loadtest-scale: loadtest-build redis-server
	$(LOADTEST)/run.sh scale

loadtest-rolling: loadtest-build redis-server nginx
	$(LOADTEST)/run.sh rolling
