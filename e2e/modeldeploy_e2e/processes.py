"""Stopping a server process the harness started (MinIO, the registry, containerd)."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM `process` if it still runs, SIGKILL after `grace` seconds; reap it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
