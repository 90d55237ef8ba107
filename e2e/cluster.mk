# Local Kubernetes cluster for e2e and the demo, built from Go modules (see e2e/README.md).
# Included by the main Makefile, which defines PY and VENV.

CACHE_DIR := $(CURDIR)/.cache
BIN_DIR := $(CACHE_DIR)/bin
CLUSTER_DIR := $(CACHE_DIR)/realnode
GO_ENV := GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
GO_BUILD := go build -trimpath -ldflags '-s -w'

# modver(go.mod, module): the version a wrapper go.mod requires of `module`.
modver = $(shell awk '/^[[:space:]]*\/\//{next} {for (i = 1; i < NF; i++) if ($$i == "$(2)") {print $$(i+1); exit}}' $(1))

# Pinned in e2e/go/*/go.mod; the stamp files name the version so a bump rebuilds (and
# so does an edit of this file, which may change the ldflags).
MINIO_MOD := $(CURDIR)/e2e/go/minio
MINIO_VERSION := $(call modver,e2e/go/minio/go.mod,github.com/minio/minio)

$(BIN_DIR)/.minio-$(MINIO_VERSION): e2e/go/minio/go.mod e2e/go/minio/go.sum e2e/cluster.mk
	@mkdir -p $(BIN_DIR)
	cd $(MINIO_MOD) && $(GO_ENV) $(GO_BUILD) -o $(BIN_DIR)/minio github.com/minio/minio
	@rm -f $(BIN_DIR)/.minio-*; touch $@

.PHONY: minio
minio: $(BIN_DIR)/.minio-$(MINIO_VERSION) ## build .cache/bin/minio (S3 server) from its pinned Go module

K8S_MOD := $(CURDIR)/e2e/go/kubernetes
K8S_VERSION := $(call modver,e2e/go/kubernetes/go.mod,k8s.io/kubernetes)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
K8S_TOOLS := kube-apiserver kube-controller-manager kube-scheduler kubectl
# What hack/lib/version.sh stamps, so `kubectl version` and /version report the release.
k8s_version_x = -X 'k8s.io/$(1).gitVersion=$(K8S_VERSION)' -X 'k8s.io/$(1).gitMajor=1' \
	-X 'k8s.io/$(1).gitMinor=$(K8S_MINOR)' -X 'k8s.io/$(1).gitTreeState=clean' \
	-X 'k8s.io/$(1).buildDate=$(BUILD_DATE)'
BUILD_DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
K8S_LDFLAGS = -s -w $(call k8s_version_x,component-base/version) $(call k8s_version_x,client-go/pkg/version)

$(BIN_DIR)/.kubernetes-$(K8S_VERSION): e2e/go/kubernetes/go.mod e2e/go/kubernetes/go.sum e2e/cluster.mk
	@mkdir -p $(BIN_DIR)
	cd $(K8S_MOD) && $(GO_ENV) go build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(BIN_DIR)/ \
		$(addprefix k8s.io/kubernetes/cmd/,$(K8S_TOOLS))
	@rm -f $(BIN_DIR)/.kubernetes-*; touch $@

ETCD_VERSION := $(call modver,e2e/go/etcd/go.mod,go.etcd.io/etcd/server/v3)
$(BIN_DIR)/.etcd-$(ETCD_VERSION): e2e/go/etcd/go.mod e2e/go/etcd/go.sum e2e/cluster.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/etcd && $(GO_ENV) $(GO_BUILD) -o $(BIN_DIR)/etcd go.etcd.io/etcd/server/v3
	@rm -f $(BIN_DIR)/.etcd-*; touch $@

HELM_VERSION := $(call modver,e2e/go/helm/go.mod,helm.sh/helm/v3)
# As helm's own Makefile does: without these, `helm template`/`lint` assume Kubernetes 1.20
# and refuse charts that require a newer one.
HELM_CLIENT_GO := $(call modver,e2e/go/helm/go.mod,k8s.io/client-go)
HELM_K8S_MINOR := $(word 2,$(subst ., ,$(HELM_CLIENT_GO)))
HELM_K8S_X := $(foreach pkg,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(pkg).k8sVersionMajor=1 \
	-X helm.sh/helm/v3/$(pkg).k8sVersionMinor=$(HELM_K8S_MINOR))
$(BIN_DIR)/.helm-$(HELM_VERSION): e2e/go/helm/go.mod e2e/go/helm/go.sum e2e/cluster.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/helm && $(GO_ENV) go build -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) $(HELM_K8S_X)" \
		-o $(BIN_DIR)/helm helm.sh/helm/v3/cmd/helm
	@rm -f $(BIN_DIR)/.helm-*; touch $@

.PHONY: binaries
binaries: minio $(BIN_DIR)/.kubernetes-$(K8S_VERSION) $(BIN_DIR)/.etcd-$(ETCD_VERSION) $(BIN_DIR)/.helm-$(HELM_VERSION) ## build etcd, the control plane, kubectl, helm and minio into .cache/bin (skips what is built)

# Bump Kubernetes: `make k8s-gomod K8S_NEW=v1.36.4` regenerates the wrapper go.mod from
# the release's own go.mod (staging replaces included) and tidies it.
.PHONY: k8s-gomod
k8s-gomod: venv
	@test -n "$(K8S_NEW)" || { echo "set K8S_NEW, e.g. make k8s-gomod K8S_NEW=v1.36.3" >&2; exit 2; }
	cd $(K8S_MOD) && upstream=$$($(GO_ENV) go mod download -json k8s.io/kubernetes@$(K8S_NEW) \
		| $(CURDIR)/$(PY) -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') && \
		$(CURDIR)/$(PY) -m modeldeploy_e2e.gomod --version $(K8S_NEW) --upstream "$$upstream" --out go.mod && \
		$(GO_ENV) go mod tidy

# Host tools the cluster uses: openssl (certificates), ip (the node's network namespace),
# nsenter (components run inside it). Installed with apt-get when missing.
HOST_TOOLS := openssl:openssl ip:iproute2 nsenter:util-linux
.PHONY: cluster-deps
cluster-deps:
	@missing=""; for pair in $(HOST_TOOLS); do command -v $${pair%%:*} >/dev/null || \
		missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
		apt-get update -qq && apt-get install -y -qq $$missing; fi

# The local cluster: the control plane and a real node (kubelet, containerd, kube-proxy,
# CoreDNS) in the harness's own network namespace (e2e/README.md, "Real node").
CLUSTER_DEPS := venv binaries cluster-deps node-binaries node-deps

.PHONY: cluster-up
cluster-up: $(CLUSTER_DEPS) ## start the local cluster on a real node in its own network namespace (idempotent)
	$(PY) -m modeldeploy_e2e.realnode up

.PHONY: cluster-down
cluster-down: ## stop it: containers, shims, mounts, cgroups, pod and node namespaces (state stays in .cache/realnode)
	@if [ -x $(PY) ]; then $(PY) -m modeldeploy_e2e.realnode down; fi

.PHONY: cluster-clean
cluster-clean: cluster-down ## stop the cluster and delete its state (etcd data, certs, logs)
	rm -rf $(CLUSTER_DIR)

# The suite starts the local cluster and installs the project's images on it (built and
# pushed by the session); with $KUBECONFIG set it runs against that cluster instead.
E2E_PYTEST = PATH="$(BIN_DIR):$$PATH" $(PY) -m pytest -q e2e/tests

.PHONY: test-e2e
test-e2e: $(CLUSTER_DEPS) ## harness and end-to-end tests (on the local cluster; $$KUBECONFIG: that cluster)
	$(E2E_PYTEST)

# The flake hunt (issue 16): the whole e2e suite N times in a row, every run to its end,
# then one line per run. LOAD=k keeps k busy loops running alongside (a loaded machine).
N ?= 3
LOAD ?= 0
.PHONY: test-e2e-repeat
test-e2e-repeat: $(CLUSTER_DEPS) ## the whole e2e suite N times (N=3), optionally under LOAD=k busy loops
	@pids=""; for _ in $$(seq 1 $(LOAD)); do ( while :; do :; done ) & pids="$$pids $$!"; done; \
	trap 'test -z "$$pids" || kill $$pids 2>/dev/null' EXIT; \
	results=""; failed=0; \
	for i in $$(seq 1 $(N)); do \
		echo "== e2e run $$i of $(N) (LOAD=$(LOAD))"; start=$$(date +%s); \
		if $(E2E_PYTEST); then rc=0; else rc=$$?; failed=1; fi; \
		results="$$results\nrun $$i: rc=$$rc in $$(( $$(date +%s) - start ))s"; \
	done; \
	printf "== e2e repeat summary:$$results\n"; exit $$failed
