# The demo and the operator benchmark (issue 4). Included by the Makefile.

.PHONY: demo
demo: venv binaries node-binaries node-deps ## a real node + MinIO + operator; MiniLM v1 to Available, an inference, blue-green to v2, a bad v3 flipped back
	$(PY) -m modeldeploy_e2e.demo up

.PHONY: demo-down
demo-down: ## stop everything `make demo` started (operator, cluster, MinIO)
	$(PY) -m modeldeploy_e2e.demo down

.PHONY: bench-operator
bench-operator: venv binaries ## operator overhead over 5 upgrades; cost at rest with 1000 ModelDeployments
	$(PY) bench/bench_operator.py

# `make bench` runs this one too (a prerequisite added here, the recipe stays in bench.mk).
bench: bench-operator
