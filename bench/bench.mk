# Benchmarks (see bench/README.md). Included by the main Makefile, which defines PY and venv.
BENCH_REPEATS ?= 3
# Transfers on shared cores vary more than start-ups; a median of 5 is steadier.
BENCH_FETCH_REPEATS ?= 5

# infinity-emb pins transformers < 5: it gets a virtualenv of its own (uv reuses the wheels
# the project's venv already cached, torch included).
INFINITY_VENV ?= .cache/infinity-venv
BENCH_SERVE_SECONDS ?= 5

.PHONY: bench bench-runtime bench-fetch bench-serve
bench: bench-runtime bench-fetch bench-serve ## run every benchmark; each prints one line per comparison ending with the ratio

bench-runtime: venv ## MiniLM time-to-ready: runtime vs sentence-transformers vs the floor
	$(PY) bench/bench_startup.py --repeats $(BENCH_REPEATS)

bench-fetch: venv minio ## fetch ~1 GiB from a loopback MinIO: runtime vs aws s3 cp vs a boto3 loop
	$(PY) bench/bench_fetch.py --repeats $(BENCH_FETCH_REPEATS)

$(INFINITY_VENV)/bin/infinity_emb: | venv
	$(PY) -m uv venv --python 3.11 $(INFINITY_VENV)
	$(PY) -m uv pip install --python $(INFINITY_VENV)/bin/python \
		"infinity-emb[server,torch]==0.0.78" "transformers>=4.57,<5"

bench-serve: venv $(INFINITY_VENV)/bin/infinity_emb ## MiniLM under 1-32 clients: runtime vs infinity-emb vs sentence-transformers in Starlette
	$(PY) bench/bench_serve.py --infinity $(INFINITY_VENV)/bin/infinity_emb --seconds $(BENCH_SERVE_SECONDS)
