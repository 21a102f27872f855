# AWS Lambda: the functions of template.yaml (functions/stream, deployed as
# StreamFunction or VpcStreamFunction, functions/api, and functions/ingest
# with Ingest=sqs or sqs-fifo). Included by the
# root Makefile, so that `sam build` finds the build-<LogicalId> rules there
# (CodeUri is the repository root; SAM runs `make build-StreamFunction
# ARTIFACTS_DIR=...`).
#
#   sam build && sam deploy --guided   build with these rules, then deploy
#   make package                       dist/{stream,api,ingest}-{arm64,amd64}.zip, bootstrap inside
#   make lambda-lint                   cfn-lint template.yaml (part of make test)
#   make lambda-build                  the deployed build, for arm64 (part of make test)
#   make lambda-rie                    bin/aws-lambda-rie, the Runtime Interface Emulator
#
# The functions' tests (go test ./functions/...) run the built bootstraps
# under a fake Runtime API and under aws-lambda-rie; they are part of
# make test-go, and fetch aws-lambda-rie themselves if bin/ lacks it.

LAMBDA_ARCH   ?= arm64
LAMBDA_GOFLAGS = -tags lambda.norpc -trimpath -ldflags "-s -w"
# $(call lambda_build,GOARCH,OUTPUT,FUNCTION)
lambda_build   = CGO_ENABLED=0 GOOS=linux GOARCH=$(1) $(GO) build $(LAMBDA_GOFLAGS) -o $(2) ./functions/$(3)

LAMBDA_FUNCTIONS := stream api ingest
LAMBDA_ARCHES    := arm64 amd64
LAMBDA_ZIPS      := $(foreach f,$(LAMBDA_FUNCTIONS),$(foreach a,$(LAMBDA_ARCHES),dist/$(f)-$(a).zip))

# The Lambda Runtime Interface Emulator: its repository tags no module
# versions, so this is the pseudo-version of its main branch that the Go
# module proxy serves. Keep in step with rieVersion in functions/api/api_test.go.
RIE_PACKAGE := github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d

TEST_TARGETS += lambda-lint lambda-build

.PHONY: build-StreamFunction build-VpcStreamFunction build-ApiFunction build-IngestFunction package lambda-lint lambda-build lambda-rie lambda-force

# SAM's makefile build method: one rule per function, output $(ARTIFACTS_DIR)/bootstrap.
build-StreamFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is unset: sam build sets it"; exit 1; }
	$(call lambda_build,$(LAMBDA_ARCH),$(ARTIFACTS_DIR)/bootstrap,stream)

# The vpc path's streaming function: the same binary as StreamFunction.
build-VpcStreamFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is unset: sam build sets it"; exit 1; }
	$(call lambda_build,$(LAMBDA_ARCH),$(ARTIFACTS_DIR)/bootstrap,stream)

build-ApiFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is unset: sam build sets it"; exit 1; }
	$(call lambda_build,$(LAMBDA_ARCH),$(ARTIFACTS_DIR)/bootstrap,api)

build-IngestFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is unset: sam build sets it"; exit 1; }
	$(call lambda_build,$(LAMBDA_ARCH),$(ARTIFACTS_DIR)/bootstrap,ingest)

package: $(LAMBDA_ZIPS)

# dist/<function>-<arch>.zip. go build is incremental, so it always runs;
# the zip is reproducible (fixed mtime, no extra attributes): the same
# source gives the same zip, and CloudFormation sees no change.
dist/%.zip: lambda-force
	@command -v zip >/dev/null 2>&1 || { echo "make package needs zip (apt-get install zip)"; exit 1; }
	@set -e; fn=$(word 1,$(subst -, ,$*)); arch=$(word 2,$(subst -, ,$*)); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(call lambda_build,$$arch,$$tmp/bootstrap,$$fn); \
	touch -t 198001010000 "$$tmp/bootstrap"; \
	mkdir -p dist; rm -f "$@"; \
	(cd "$$tmp" && zip -q -X "$(CURDIR)/$@" bootstrap); \
	echo "$@"

lambda-force:

lambda-lint:
	@command -v cfn-lint >/dev/null 2>&1 || { echo "cfn-lint is missing: pip install cfn-lint"; exit 1; }
	cfn-lint template.yaml

# What SAM deploys (CGO off, no RPC, linux/arm64), thrown away: go vet and
# go test build neither with lambda.norpc nor for Linux on arm64.
lambda-build:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for fn in $(LAMBDA_FUNCTIONS); do $(call lambda_build,arm64,$$tmp/$$fn,$$fn); done; \
	echo "lambda-build: $(LAMBDA_FUNCTIONS) build for linux/arm64"

lambda-rie:
	GOBIN=$(BIN) $(GO) install $(RIE_PACKAGE)@$(RIE_VERSION)
