# Local Kubernetes cluster for e2e and the demo, built from Go modules (see e2e/README.md).
# Included by the main Makefile, which defines PY and VENV.

CACHE_DIR := $(CURDIR)/.cache
BIN_DIR := $(CACHE_DIR)/bin
CLUSTER_DIR := $(CACHE_DIR)/cluster
GO_ENV := GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
GO_BUILD := go build -trimpath -ldflags '-s -w'

# modver(go.mod, module): the version a wrapper go.mod requires of `module`.
modver = $(shell awk '{for (i = 1; i < NF; i++) if ($$i == "$(2)") {print $$(i+1); exit}}' $(1))

# Pinned in e2e/go/*/go.mod; the stamp files name the version so a bump rebuilds.
MINIO_MOD := $(CURDIR)/e2e/go/minio
MINIO_VERSION := $(call modver,e2e/go/minio/go.mod,github.com/minio/minio)

$(BIN_DIR)/.minio-$(MINIO_VERSION): e2e/go/minio/go.mod e2e/go/minio/go.sum
	@mkdir -p $(BIN_DIR)
	cd $(MINIO_MOD) && $(GO_ENV) $(GO_BUILD) -o $(BIN_DIR)/minio github.com/minio/minio
	@rm -f $(BIN_DIR)/.minio-*; touch $@

.PHONY: minio
minio: $(BIN_DIR)/.minio-$(MINIO_VERSION) ## build .cache/bin/minio (S3 server) from its pinned Go module
