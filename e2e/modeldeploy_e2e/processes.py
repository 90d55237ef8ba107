"""The harness's own server processes: is one still ours and running, and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


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


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def alive(pid: int | None, hint: str, exec_wait: float = 1.0) -> bool:
    """`pid` runs and its command line mentions `hint` (ours, not a recycled pid).

    A process between fork and exec, or inside exec, shows an empty command line: that is
    read again for up to `exec_wait` seconds rather than taken for someone else's."""
    if not pid:
        return False
    deadline = time.monotonic() + exec_wait
    while True:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            return False
        if not running(pid):
            return False
        if cmdline or time.monotonic() >= deadline:
            return hint in cmdline
        time.sleep(0.05)


def terminate_group(pid: int, grace: float) -> None:
    """SIGTERM the process group `pid` leads (the process alone when it leads none),
    SIGKILL after `grace` seconds; reap it when it is our child."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not running(pid):
                return
            time.sleep(0.1)
