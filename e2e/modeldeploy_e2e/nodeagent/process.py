"""Run one container as a local process: its own mount namespace (volumes bind-mounted at
their mountPaths), its own process group, and a memory cgroup when a limit is set."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_e2e.nodeagent.podspec import Mount
from modeldeploy_e2e.paths import REPO_ROOT


def mount_namespaces_work() -> bool:
    """Whether `unshare --mount` is permitted here (root, no seccomp block)."""
    try:
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# Private to each container's mount namespace (a tmpfs is mounted over it there).
STAGE = "/run/modeldeploy-stage"


def _covers(target: str, path: Path) -> bool:
    return path == Path(target) or Path(target) in path.parents


def launch_script(mounts: Sequence[Mount], workdir: str, cgroup_procs: Path | None,
                  keep_visible: Sequence[Path] = (REPO_ROOT,)) -> str:
    """Return the sh script run inside the new mount namespace before exec'ing the command.

    A mountPath can hide host paths the container still needs: an emptyDir at /tmp hides a
    checkout under /tmp, with its virtualenv and the very volume directories being mounted.
    So each source, and each path in `keep_visible`, is first bound under a private staging
    tmpfs; volumes are mounted from there; and a kept path that a mountPath covers is bound
    back over it afterwards.
    """
    q = shlex.quote
    lines = ["set -e"]
    if cgroup_procs is not None:
        lines.append(f"echo $$ > {q(str(cgroup_procs))}")
    lines.append(f"mkdir -p {STAGE}")
    lines.append(f"mount -t tmpfs -o size=1m,mode=0700 modeldeploy-stage {STAGE}")
    staged: dict[Path, str] = {}

    def stage(path: Path, is_file: bool) -> str:
        if path not in staged:
            staged[path] = f"{STAGE}/{len(staged)}"
            lines.append(f": > {staged[path]}" if is_file else f"mkdir {staged[path]}")
            lines.append(f"mount --bind {q(str(path))} {staged[path]}")
        return staged[path]

    kept = [(path, stage(path, False)) for path in keep_visible]
    is_file = [m.is_file or m.source.is_file() for m in mounts]
    # Every source is staged before the first mountPath can cover it.
    sources = [stage(m.source, f) for m, f in zip(mounts, is_file, strict=True)]
    for mount, source, file_mount in zip(mounts, sources, is_file, strict=True):
        target = q(mount.target)
        if file_mount:
            lines.append(f"mkdir -p {q(os.path.dirname(mount.target) or '/')}")
            lines.append(f"[ -e {target} ] || : > {target}")
        else:
            lines.append(f"mkdir -p {target}")
        lines.append(f"mount --bind {source} {target}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    for path, copy in kept:
        if any(_covers(mount.target, path) for mount in mounts):
            lines.append(f"mkdir -p {q(str(path))}")
            lines.append(f"mount --bind {copy} {q(str(path))}")
    lines.append(f"cd {q(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def rewrite_paths(values: Sequence[str], mounts: Sequence[Mount]) -> list[str]:
    """Fallback without mount namespaces: replace mountPath prefixes by host directories."""
    ordered = sorted(mounts, key=lambda m: len(m.target), reverse=True)
    out = []
    for value in values:
        for mount in ordered:
            if value == mount.target or value.startswith(mount.target.rstrip("/") + "/"):
                value = str(mount.source) + value[len(mount.target.rstrip("/")):]
                break
        out.append(value)
    return out


class MemoryCgroup:
    """A memory cgroup (v1 or v2) below the agent's own, for one container."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> MemoryCgroup | None:
        """Create the cgroup with `limit_bytes`, or return None where cgroups are not writable."""
        base = _own_memory_cgroup()
        if base is None:
            return None
        path, version = base[0] / "modeldeploy" / name, base[1]
        try:
            path.mkdir(parents=True, exist_ok=True)
            limit_file = "memory.limit_in_bytes" if version == 1 else "memory.max"
            (path / limit_file).write_text(str(limit_bytes))
            if version == 1:
                # Without this the kernel may swap instead of killing at the limit.
                swap = path / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(limit_bytes))
        except OSError:
            return None
        return cls(path, version)

    @property
    def procs(self) -> Path:
        """The file a process writes its pid to in order to join."""
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup."""
        events = self.path / ("memory.oom_control" if self.version == 1 else "memory.events")
        try:
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone."""
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def _own_memory_cgroup() -> tuple[Path, int] | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if os.access(base, os.W_OK):
                return base, 1
    unified = Path("/sys/fs/cgroup/cgroup.controllers")
    if unified.exists() and "memory" in unified.read_text().split():
        for line in lines:
            if line.startswith("0::"):
                base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                if os.access(base, os.W_OK):
                    return base, 2
    return None


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks: with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def kill_leftovers(pods_dir: Path) -> list[int]:
    """SIGKILL the process groups recorded in `<pods_dir>/*/containers/*/pid` that still run
    (same pid and start time); return their pids."""
    killed = []
    for record in pods_dir.glob("*/containers/*/pid"):
        try:
            pid_text, started = record.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if started and _start_time(pid) == started:
            try:
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        record.unlink(missing_ok=True)
    return killed


@dataclass
class Exit:
    """How a container process ended."""

    exit_code: int
    signal: int | None
    oom_killed: bool

    @property
    def reason(self) -> str:
        """The kubelet's terminated.reason."""
        if self.oom_killed:
            return "OOMKilled"
        return "Completed" if self.exit_code == 0 else "Error"


class ContainerProcess:
    """A started container process; poll it, stop it gracefully."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[Mount],
        workdir: str,
        log_path: Path,
        *,
        use_namespace: bool,
        cgroup: MemoryCgroup | None,
    ) -> None:
        self.cgroup = cgroup
        self.use_namespace = use_namespace
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if use_namespace:
            script = launch_script(mounts, workdir, cgroup.procs if cgroup else None)
            command = ["unshare", "--mount", "--propagation", "private", "--",
                       "/bin/sh", "-c", script, "sh", *argv]
            cwd = "/"
        else:
            command, cwd = list(argv), workdir
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        # Recorded so an agent restarted after a crash can stop what this one left running.
        self.pid_file = log_path.parent / "pid"
        self.pid_file.write_text(f"{self.process.pid} {_start_time(self.process.pid)}")
        if cgroup is not None and not use_namespace:
            with contextlib.suppress(OSError):
                cgroup.procs.write_text(str(self.process.pid))
        self.pid = self.process.pid

    def nsenter_prefix(self) -> list[str]:
        """argv prefix that runs a command inside this container's mount namespace."""
        if not self.use_namespace:
            return []
        return ["nsenter", f"--target={self.pid}", "--mount", "--"]

    def poll(self) -> Exit | None:
        """Return how the process ended, or None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        # As when a container's PID 1 exits: nothing it started outlives it (and keeps ports).
        self.signal_group(signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        oom = self.cgroup is not None and self.cgroup.oom_kills() > 0
        sig = -code if code < 0 else None
        # A signalled process reports 128+signal, as container runtimes do.
        result = Exit(128 + sig if sig else code, sig, oom)
        if self.cgroup is not None:
            self.cgroup.remove()
        return result

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to the container's whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float) -> Exit:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; return the exit."""
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait()
        # Children that ignored SIGTERM after their leader exited still hold ports.
        self.signal_group(signal.SIGKILL)
        exit_ = self.poll()
        assert exit_ is not None
        return exit_
