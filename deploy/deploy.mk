# The container path (deploy/README.md): the image, ECS on Fargate and
# Kubernetes. deploy/ is a Go module of its own, so go-containerregistry,
# k8s.io/api and kustomize never enter the service's module; the root's
# go vet and go test do not reach it, deploy-test does. Included by the root
# Makefile.
#
#   make image                       dist/image (OCI layout, linux/amd64 and
#                                    linux/arm64) and dist/orderstream-image.tar
#                                    (docker load, this machine's platform)
#   make image REGISTRY=ghcr.io/you  the same, and pushed as
#                                    ghcr.io/you/orderstream:$(IMAGE_VERSION)
#   make deploy-test                 the module's vet and tests (part of make test; about 12 s
#                                    warm; cold, compiling its libraries and the static server
#                                    for amd64 adds about 3 minutes on two busy cores)
#                                    (cd deploy && go test -short ./... skips the image build
#                                    and redis-server, as make test-fast does in the root)
#   make ecs-lint                    cfn-lint deploy/ecs/template.yaml (part of make test)
#   make test-rollout                the rolling-update simulations (local/rollout_test.go)
#                                    with ROLLOUT_ORDERS orders x 3 streams (default 1000)

DEPLOY := $(CURDIR)/deploy

# The image's version label and tag; its timestamps are the last commit's
# time (SOURCE_DATE_EPOCH), so the same commit builds the same digest.
IMAGE_VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REGISTRY          ?=

TEST_TARGETS += deploy-test ecs-lint

.PHONY: image deploy-test ecs-lint test-rollout

image:
	cd $(DEPLOY) && $(GO) run ./cmd/image -repo $(CURDIR) \
		-layout $(CURDIR)/dist/image -tarball $(CURDIR)/dist/orderstream-image.tar \
		-version "$(IMAGE_VERSION)" -revision "$(IMAGE_REVISION)" -created "$(SOURCE_DATE_EPOCH)" \
		$(if $(REGISTRY),-push "$(REGISTRY)/orderstream:$(IMAGE_VERSION)")

# Without -race: nothing in this module runs concurrently but the tests'
# own helpers, and a race build would compile k8s.io/api, kustomize and
# go-containerregistry a second time (vet compiles them once) for nothing:
# about 1.5 minutes of a cold make test on two cores.
deploy-test: redis-server
	cd $(DEPLOY) && $(GO) vet ./... && $(GO) test -count=1 ./...

# No errors and no warnings (cfn-lint exits non-zero on either).
ecs-lint:
	@command -v cfn-lint >/dev/null 2>&1 || { echo "cfn-lint is missing: pip install cfn-lint"; exit 1; }
	cfn-lint deploy/ecs/template.yaml

# make test runs these with 60 streams; this, with more (not for a busy box).
ROLLOUT_ORDERS ?= 1000
test-rollout: redis-server nginx
	ORDERSTREAM_ROLLOUT_ORDERS=$(ROLLOUT_ORDERS) $(GO) test -count=1 -timeout 20m -run '^TestRollingUpdate' -v ./local/
