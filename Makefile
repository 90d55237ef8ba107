# modeldeploy — every set-up step lives here so a fresh clone needs only `make test` / `make demo`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv hard-links wheels from its cache, so a fresh clone on a warm machine installs in seconds.
UV := $(PY) -m uv
EXTRAS ?= operator,runtime,dev
PKGS := contract/modeldeploy_contract operator/modeldeploy_operator runtime/modeldeploy_runtime e2e/modeldeploy_e2e

CACHE ?= .cache
HELM ?= $(CACHE)/bin/helm
export PATH := $(CURDIR)/$(CACHE)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check 'uv>=0.4'
	$(UV) pip install --python $(PY) -e '.[$(EXTRAS)]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtualenv and install every extra

.PHONY: crds
CRD_FILE := modeldeployments.modeldeploy.dev.yaml
crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) -m modeldeploy_operator.api.crdgen --out crds/$(CRD_FILE)
	cp crds/$(CRD_FILE) charts/modeldeploy/crds/$(CRD_FILE)

.PHONY: k8s-schemas
k8s-schemas: venv ## re-extract the Kubernetes schemas spec.pod embeds (api/k8s_schemas.json) from the Go module cache's OpenAPI spec
	$(PY) -m modeldeploy_operator.api.k8sgen

.PHONY: manifests
manifests: ## regenerate deploy/modeldeploy.yaml (kubectl apply -k deploy/) from the chart
	$(HELM) template modeldeploy charts/modeldeploy --namespace modeldeploy-system --include-crds --skip-tests \
	  | sed '/^# Source: /d' > deploy/modeldeploy.yaml

.PHONY: lint
lint: venv ## ruff, mypy --strict and the import-layering contracts
	$(PY) -m ruff check $(PKGS) tests e2e bench
	$(PY) -m mypy $(PKGS)
	$(VENV)/bin/lint-imports

.PHONY: test-unit
# The runtime's S3 tests run a real MinIO and the chart tests a real Helm, hence binaries.
test-unit: venv binaries ## unit, property, runtime and chart tests (no cluster)
	$(PY) -m pytest -q tests

.PHONY: test
test: venv lint test-unit test-e2e ## every test tier

-include e2e/cluster.mk e2e/node.mk charts/charts.mk bench/bench.mk demo.mk
