# Chart checks (issue 6). Included by the main Makefile, which defines PY and VENV.
# tests/charts: helm lint, helm template with default and ci/ values, RBAC derived from the
# operator code; e2e/tests/test_chart_cluster.py: server-side dry-run, install / upgrade /
# uninstall leaving only the CRDs (local cluster, or $KUBECONFIG); tests/packaging:
# Dockerfile honesty. The Helm-installed e2e scenarios are e2e/tests/test_helm_install.py.

.PHONY: test-charts
test-charts: venv binaries ## chart checks: lint, template, RBAC vs code, dry-run, install/upgrade/uninstall
	PATH="$(CURDIR)/.cache/bin:$$PATH" $(PY) -m pytest -q tests/charts tests/packaging \
		e2e/tests/test_chart_cluster.py

.PHONY: test-helm-e2e
test-helm-e2e: venv binaries ## the e2e scenarios with the operator installed by Helm (a pod under the chart's RBAC)
	PATH="$(CURDIR)/.cache/bin:$$PATH" $(PY) -m pytest -q e2e/tests/test_helm_install.py
