"""Import torch & co. in a thread started before anything else in `serve`.

Start-up is mostly imports (torch alone takes seconds). This module imports only the
standard library itself, so the thread starts within milliseconds of the process. It also
decides how the runtime's threads use the CPUs it was given (`forward_threads`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

FORWARD_THREADS_ENV = "MODELDEPLOY_FORWARD_THREADS"


def cpu_quota(cpu_max: str) -> int | None:
    """Whole CPUs granted by a cgroup v2 `cpu.max` line ("200000 100000" -> 2); None if
    unlimited or unreadable."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return max(1, math.floor(int(parts[0]) / int(parts[1])))
    except (ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class Threads:
    """Forward passes that run at once, and torch's intra-op threads inside each."""

    forward: int
    intra_op: int


def forward_threads(cpus: int, device_type: str, requested: str | None = None) -> Threads:
    """How an encoder's forward passes use `cpus` (torch's thread count after the quota and
    OMP_NUM_THREADS): on a GPU one pass at a time (its kernels share one device); on a CPU
    `requested` passes at once (MODELDEPLOY_FORWARD_THREADS), by default one per CPU, with
    the CPUs split among them. Independent single-threaded passes have no OpenMP barrier to
    wait at, so on shared or throttled cores each keeps running while the others wait for
    the scheduler (bench/README.md: 1.3-1.8x the texts per second of one two-thread pass,
    in one process on 2 shared cores)."""
    cpus = max(1, cpus)
    if device_type == "cuda":
        return Threads(forward=1, intra_op=cpus)
    forward = cpus
    if requested is not None and requested.strip():
        try:
            forward = int(requested)
        except ValueError:
            forward = 0
        if forward < 1:
            from modeldeploy_runtime.errors import ConfigError

            raise ConfigError(
                f"{FORWARD_THREADS_ENV}={requested!r} is not a positive whole number of "
                f"threads; unset it (one per CPU: {cpus} here) or set e.g. 1")
    return Threads(forward=forward, intra_op=max(1, cpus // forward))


def use_forward_threads(device_type: str) -> Threads:
    """Apply `forward_threads` for an encoder on `device_type`: torch's intra-op threads
    set for the forward threads the batcher will start (they take the process-wide count
    when they first run an operator). Call after the imports, before warm-up."""
    import torch

    threads = forward_threads(torch.get_num_threads(), device_type,
                              os.environ.get(FORWARD_THREADS_ENV))
    torch.set_num_threads(threads.intra_op)
    return threads


def _configure_threads() -> None:
    # Idle OpenMP workers spin by default; on a pod sharing cores (or throttled by its CPU
    # limit) that made each small forward pass 10-40x slower here (bench/README.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _limit_torch_threads() -> None:
    # torch sizes its pool by the host's cores, not the pod's CPU limit; more threads than
    # the quota only queue behind the CFS throttle. OMP_NUM_THREADS, when set, wins.
    if "OMP_NUM_THREADS" in os.environ:
        return
    try:
        quota = cpu_quota(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    if quota is not None:
        import torch

        torch.set_num_threads(min(quota, torch.get_num_threads()))


def import_libraries() -> float:
    """Import what loading needs (and nothing more); returns the seconds it took."""
    started = time.monotonic()
    _configure_threads()
    import safetensors.torch  # noqa: F401
    import tokenizers  # noqa: F401
    import torch  # noqa: F401

    _limit_torch_threads()

    import modeldeploy_runtime.bert
    import modeldeploy_runtime.tasks  # noqa: F401

    return time.monotonic() - started


class Imports:
    """The background import; `wait()` joins it and returns its seconds or raises."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="imports", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.seconds = import_libraries()
        except BaseException as error:  # reported by wait(), on the loading thread
            self.error = error

    def wait(self) -> float:
        """Block until the imports finish; returns their seconds or raises ImportError."""
        self._thread.join()
        if self.error is not None:
            raise ImportError(f"importing the ML libraries failed: {self.error}") from None
        return self.seconds
