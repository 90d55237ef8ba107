# Benchmarks (see bench/README.md). Included by the main Makefile, which defines PY and venv.
BENCH_REPEATS ?= 3
# Transfers on shared cores vary more than start-ups; a median of 5 is steadier.
BENCH_FETCH_REPEATS ?= 5

.PHONY: bench bench-runtime bench-fetch
bench: bench-runtime bench-fetch ## run every benchmark; each prints one line per comparison ending with the ratio

bench-runtime: venv ## MiniLM time-to-ready: runtime vs sentence-transformers vs the floor
	$(PY) bench/bench_startup.py --repeats $(BENCH_REPEATS)

bench-fetch: venv minio ## fetch ~1 GiB from a loopback MinIO: runtime vs aws s3 cp vs a boto3 loop
	$(PY) bench/bench_fetch.py --repeats $(BENCH_FETCH_REPEATS)
