"""Run an image's root filesystem with runc, as a kubelet would with a restricted pod:
the image's user, a read-only root filesystem, no capabilities, writable only where
volumes are mounted. The container shares the host's network namespace, so it reaches
(and is reached on) 127.0.0.1 only.

    with store.rootfs(ref) as rootfs:
        spec = oci_spec(rootfs, process_args(config, ["--help"]), ...)
        result = run_once(spec, state_dir, "name")
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy_e2e.paths import BIN_DIR

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Bind:
    """A host path mounted into the container (a volume)."""

    source: Path
    destination: str
    read_only: bool = True


@dataclass(frozen=True)
class Process:
    """What the container runs, from the image config plus the pod's overrides."""

    args: list[str]
    env: list[str]
    uid: int
    gid: int
    cwd: str = "/"
    extra_env: dict[str, str] = field(default_factory=dict)


def parse_user(user: str) -> tuple[int, int]:
    """`uid[:gid]` from an image config; names need the image's /etc/passwd, refused here."""
    uid, _, gid = (user or "0").partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ValueError(f"image User {user!r} is not numeric; kubelet's runAsNonRoot check "
                         "needs a numeric USER in the Dockerfile, e.g. USER 65532:65532")
    return int(uid), int(gid or uid)


def image_process(config: JsonDict, args: list[str] | None = None,
                  env: dict[str, str] | None = None) -> Process:
    """The process Kubernetes starts for a container that sets only `args` (or nothing):
    the image's ENTRYPOINT with `args`, or with the image's CMD when `args` is None."""
    entrypoint = list(config.get("Entrypoint") or [])
    command = entrypoint + (list(args) if args is not None else list(config.get("Cmd") or []))
    uid, gid = parse_user(str(config.get("User") or "0"))
    merged = {k: v for k, _, v in (item.partition("=") for item in config.get("Env") or [])}
    merged.update(env or {})
    return Process(command, [f"{k}={v}" for k, v in merged.items()], uid, gid,
                   str(config.get("WorkingDir") or "/"))


def oci_spec(rootfs: Path, process: Process, *, binds: list[Bind] | None = None,
             tmpfs: list[str] | None = None, read_only_root: bool = True,
             hostname: str = "container") -> JsonDict:
    """An OCI runtime spec: pid/ipc/uts/mount namespaces (host network), no capabilities,
    no new privileges, the root filesystem read-only, `tmpfs` and `binds` writable as set."""
    mounts: list[JsonDict] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        # sysfs cannot be mounted fresh without a network namespace of its own.
        {"destination": "/sys", "type": "bind", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
    ]
    for path in tmpfs or []:
        mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777", "size=262144k"]})
    for bind in binds or []:
        mounts.append({"destination": bind.destination, "type": "bind",
                       "source": str(bind.source),
                       "options": ["rbind", "nosuid", "nodev", "ro" if bind.read_only else "rw"]})
    no_caps: list[str] = []
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": process.uid, "gid": process.gid},
            "args": process.args,
            "env": process.env + [f"{k}={v}" for k, v in process.extra_env.items()],
            "cwd": process.cwd,
            "capabilities": {"bounding": no_caps, "effective": no_caps,
                             "permitted": no_caps, "ambient": no_caps},
            # No rlimits: raising one needs CAP_SYS_RESOURCE, which these sandboxes lack;
            # the container inherits runc's.
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": read_only_root},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def runc_binary() -> Path:
    path = BIN_DIR / "runc"
    if not path.is_file():
        raise FileNotFoundError(f"runc not found at {path}; run `make runc`")
    return path


class Container:
    """One `runc run` of a spec; `start` returns at once, `stop` ends it by its id."""

    def __init__(self, spec: JsonDict, state_dir: Path, name: str) -> None:
        self.id = f"{name}-{secrets.token_hex(4)}"
        self.state_dir = Path(state_dir)
        self.bundle = self.state_dir / "bundles" / self.id
        self.log_path = self.state_dir / f"{self.id}.log"
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None

    def _runc(self, *args: str) -> list[str]:
        return [str(runc_binary()), "--root", str(self.state_dir / "runc"), *args]

    def start(self) -> Container:
        self.bundle.mkdir(parents=True, exist_ok=True)
        (self.bundle / "config.json").write_text(json.dumps(self.spec), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._runc("run", "--bundle", str(self.bundle), self.id),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the container's init, SIGKILL after `grace`, then delete it."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(self._runc("kill", self.id, "TERM"), check=False,
                           capture_output=True)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                subprocess.run(self._runc("kill", self.id, "KILL"), check=False,
                               capture_output=True)
                self.process.wait(timeout=grace)
        subprocess.run(self._runc("delete", "--force", self.id), check=False,
                       capture_output=True)


def run_once(spec: JsonDict, state_dir: Path, name: str, timeout: float = 120) -> tuple[int, str]:
    """Run the container to its end; returns (exit code, output)."""
    container = Container(spec, state_dir, name).start()
    try:
        code = container.wait(timeout)
    finally:
        container.stop()
    return code, container.output()
