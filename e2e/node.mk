# The project's images built without a Docker daemon, a local registry, and the parts of a
# real node (see e2e/README.md, "Images" and "Real node"). Included by the main Makefile
# after e2e/cluster.mk, whose BIN_DIR, GO_ENV, GO_BUILD and modver it uses.

# Host tools: buildah (daemonless builds, chroot isolation), mmdebstrap (the Python base
# from Debian packages), libseccomp-dev (runc's seccomp support), iptables (kube-proxy's
# iptables mode calls iptables-restore; buildah's recommends bring it too, but only by chance).
# Installed when missing.
NODE_APT := buildah:buildah mmdebstrap:mmdebstrap /usr/include/seccomp.h:libseccomp-dev \
	gcc:gcc pkg-config:pkg-config /usr/sbin/iptables-restore:iptables
.PHONY: node-deps
node-deps:
	@missing=""; for pair in $(NODE_APT); do tool=$${pair%%:*}; \
		if [ "$${tool#/}" != "$$tool" ]; then test -e $$tool; else command -v $$tool >/dev/null; fi \
		|| missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
		apt-get update -qq && apt-get install -y -qq $$missing; fi

REGISTRY_VERSION := $(call modver,e2e/go/registry/go.mod,github.com/distribution/distribution/v3)
$(BIN_DIR)/.registry-$(REGISTRY_VERSION): e2e/go/registry/go.mod e2e/go/registry/go.sum e2e/node.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/registry && $(GO_ENV) go build -trimpath \
		-ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$(REGISTRY_VERSION)" \
		-o $(BIN_DIR)/registry github.com/distribution/distribution/v3/cmd/registry
	@rm -f $(BIN_DIR)/.registry-*; touch $@

.PHONY: registry
registry: $(BIN_DIR)/.registry-$(REGISTRY_VERSION) ## build .cache/bin/registry (CNCF distribution) from its pinned Go module

RUNC_VERSION := $(call modver,e2e/go/runc/go.mod,github.com/opencontainers/runc)
$(BIN_DIR)/.runc-$(RUNC_VERSION): e2e/go/runc/go.mod e2e/go/runc/go.sum e2e/node.mk | node-deps
	@mkdir -p $(BIN_DIR)
	cd e2e/go/runc && GOTOOLCHAIN=local CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -trimpath \
		-tags seccomp -ldflags "-s -w -X main.version=$(RUNC_VERSION:v%=%)" \
		-o $(BIN_DIR)/runc github.com/opencontainers/runc
	@rm -f $(BIN_DIR)/.runc-*; touch $@

.PHONY: runc
runc: $(BIN_DIR)/.runc-$(RUNC_VERSION) ## build .cache/bin/runc (with seccomp) from its pinned Go module

CNI_VERSION := $(call modver,e2e/go/cni/go.mod,github.com/containernetworking/plugins)
CNI_PLUGINS := ipam/host-local main/bridge main/loopback meta/portmap
$(BIN_DIR)/.cni-$(CNI_VERSION): e2e/go/cni/go.mod e2e/go/cni/go.sum e2e/node.mk
	@mkdir -p $(BIN_DIR)/cni
	cd e2e/go/cni && $(GO_ENV) go build -trimpath \
		-ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(CNI_VERSION)" \
		-o $(BIN_DIR)/cni/ $(addprefix github.com/containernetworking/plugins/plugins/,$(CNI_PLUGINS))
	@rm -f $(BIN_DIR)/.cni-*; touch $@

.PHONY: cni
cni: $(BIN_DIR)/.cni-$(CNI_VERSION) ## build the CNI plugins (bridge, host-local, loopback, portmap) into .cache/bin/cni

# The images. RUNTIME_VARIANT=cuda is what PyPI's torch wheels give (no CPU wheel index is
# reachable here); pass RUNTIME_VARIANT=cpu TORCH_INDEX_URL=... where one is.
RUNTIME_VARIANT ?= cuda
TORCH_INDEX_URL ?=
# The store lives in the machine's cache (modeldeploy_e2e.paths.MACHINE_CACHE), not the
# checkout: a fresh clone reuses the built layers, and the disk holds them once.
IMAGES_CLI = $(PY) -m modeldeploy_e2e.images

.PHONY: python-base
python-base: venv node-deps ## the Python base image made from Debian packages (mmdebstrap), in .cache/images
	$(IMAGES_CLI) base

.PHONY: images
images: venv node-deps ## build the operator and runtime images (buildah, no Docker daemon; cached layers)
	$(IMAGES_CLI) build --variant $(RUNTIME_VARIANT) --torch-index-url '$(TORCH_INDEX_URL)'

.PHONY: push
push: venv node-deps ## push the images: make push REGISTRY=host:port[/prefix] (plain HTTP when REGISTRY is on 127.x)
	@test -n "$(REGISTRY)" || { echo "set REGISTRY, e.g. make push REGISTRY=127.0.0.1:5000" >&2; exit 2; }
	$(IMAGES_CLI) push --registry '$(REGISTRY)'

.PHONY: images-clean
images-clean: venv ## delete the image store (.cache/images)
	-$(IMAGES_CLI) clean

.PHONY: test-images
test-images: venv registry runc minio node-deps ## build the images and run them for real (slow: torch is downloaded once)
	$(PY) -m pytest -q e2e/tests/test_images.py

# The real node's parts. kubelet and kube-proxy come from their own wrapper module (the
# control plane's go.sum lacks their dependencies), generated from the same release:
# the build refuses a version that differs from the control plane's.
KUBELET_VERSION := $(call modver,e2e/go/kubelet/go.mod,k8s.io/kubernetes)
$(BIN_DIR)/.kubelet-$(KUBELET_VERSION): e2e/go/kubelet/go.mod e2e/go/kubelet/go.sum e2e/node.mk
	@test "$(KUBELET_VERSION)" = "$(K8S_VERSION)" || { echo "e2e/go/kubelet pins $(KUBELET_VERSION) but the control plane is $(K8S_VERSION): run make k8s-node-gomod" >&2; exit 1; }
	@mkdir -p $(BIN_DIR)
	cd e2e/go/kubelet && $(GO_ENV) go build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(BIN_DIR)/ \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
	@rm -f $(BIN_DIR)/.kubelet-*; touch $@

.PHONY: kubelet
kubelet: $(BIN_DIR)/.kubelet-$(KUBELET_VERSION) ## build kubelet and kube-proxy (the control plane's release) into .cache/bin

# Regenerate e2e/go/kubelet after `make k8s-gomod K8S_NEW=...` moved the control plane.
.PHONY: k8s-node-gomod
k8s-node-gomod: venv
	cd e2e/go/kubelet && upstream=$$($(GO_ENV) go mod download -json k8s.io/kubernetes@$(K8S_VERSION) \
		| $(CURDIR)/$(PY) -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])') && \
		$(CURDIR)/$(PY) -m modeldeploy_e2e.gomod --version $(K8S_VERSION) --upstream "$$upstream" \
			--module modeldeploy.dev/e2e/go/kubelet --tool k8s.io/kubernetes/cmd/kube-proxy \
			--tool k8s.io/kubernetes/cmd/kubelet --out go.mod && \
		$(GO_ENV) go mod tidy

CONTAINERD_VERSION := $(call modver,e2e/go/containerd/go.mod,github.com/containerd/containerd/v2)
$(BIN_DIR)/.containerd-$(CONTAINERD_VERSION): e2e/go/containerd/go.mod e2e/go/containerd/go.sum e2e/node.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/containerd && $(GO_ENV) go build -trimpath -tags 'no_btrfs no_devmapper no_zfs' \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)" \
		-o $(BIN_DIR)/ github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/ctr \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
	@rm -f $(BIN_DIR)/.containerd-*; touch $@

.PHONY: containerd
containerd: $(BIN_DIR)/.containerd-$(CONTAINERD_VERSION) ## build containerd, its runc shim and ctr (2.x) into .cache/bin

# CoreDNS from e2e/go/coredns/main.go: only the plugins the node's Corefile uses (the stock
# main, every plugin, took 1.6 times the CPU to build cold). CoreDNS's version is a constant
# of the module; GitCommit names the release since a module carries no commit. The new
# binary replaces the old by a rename once it reports the pinned version, so a running node
# keeps its file and a failed build leaves the last good binary. The version is read whole
# before grep: under pipefail, `-version | grep -q` fails whenever grep exits at the first
# line before CoreDNS writes its second and CoreDNS dies of SIGPIPE (a CI run failed so).
COREDNS_VERSION := $(call modver,e2e/go/coredns/go.mod,github.com/coredns/coredns)
$(BIN_DIR)/.coredns-$(COREDNS_VERSION): e2e/go/coredns/go.mod e2e/go/coredns/go.sum \
		e2e/go/coredns/main.go e2e/node.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/coredns && $(GO_ENV) go build -trimpath \
		-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$(COREDNS_VERSION)" \
		-o $(BIN_DIR)/coredns.new .
	@reported="$$($(BIN_DIR)/coredns.new -version)" && grep -qx 'CoreDNS-$(COREDNS_VERSION:v%=%)' <<< "$$reported" \
		|| { echo "$(BIN_DIR)/coredns.new does not report CoreDNS $(COREDNS_VERSION)" >&2; \
			rm -f $(BIN_DIR)/coredns.new; exit 1; }
	mv -f $(BIN_DIR)/coredns.new $(BIN_DIR)/coredns
	@rm -f $(BIN_DIR)/.coredns-*; touch $@

.PHONY: coredns
coredns: $(BIN_DIR)/.coredns-$(COREDNS_VERSION) ## build CoreDNS (only the node's Corefile's plugins) into .cache/bin

.PHONY: node-binaries
node-binaries: registry runc cni kubelet containerd coredns pause ## every binary of the real node (skips what is built)

.PHONY: test-node
test-node: venv node-binaries minio node-deps ## every real-node test: images, node binaries, node network (slow; not in make test)
	$(PY) -m pytest -q e2e/node_tests

.PHONY: node-down
node-down: venv ## delete the node's network namespace (bridges and veths inside go with it)
	$(PY) -m modeldeploy_e2e.nodenet down

$(BIN_DIR)/.pause: e2e/go/pause/go.mod e2e/go/pause/main.go e2e/node.mk
	@mkdir -p $(BIN_DIR)
	cd e2e/go/pause && $(GO_ENV) $(GO_BUILD) -o $(BIN_DIR)/pause .
	@touch $@

.PHONY: pause
pause: $(BIN_DIR)/.pause ## build the pod sandbox's pause binary (the node's sandbox image is made from it)
