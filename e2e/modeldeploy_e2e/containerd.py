"""containerd 2.x (built by `make containerd`) as a process inside the node's network
namespace, with runc (`make runc`) under its runc shim.

    with Containerd(network, tmp_path / "containerd") as ctd:
        ctd.ctr("images", "pull", "--plain-http", "127.0.0.1:5000/modeldeploy/operator:0.1.0")
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from modeldeploy_e2e import processes
from modeldeploy_e2e.nodenet import NodeNetwork
from modeldeploy_e2e.paths import BIN_DIR, harness_path

NAMESPACE = "modeldeploy"


def containerd_config(root: Path, state: Path, socket: Path, *, cri: bool = False) -> str:
    """containerd's config (version 3). Without `cri` the CRI plugins are off: ctr is enough
    to pull and run an image, and they add start-up work the kubelet alone needs."""
    lines = [
        "version = 3",
        f'root = "{root}"',
        f'state = "{state}"',
    ]
    if not cri:
        lines.append('disabled_plugins = ["io.containerd.grpc.v1.cri", '
                     '"io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"]')
    lines += ["", "[grpc]", f'  address = "{socket}"', ""]
    return "\n".join(lines)


class Containerd:
    """containerd in `network`'s namespace, its state under /run (socket paths are short)."""

    def __init__(self, network: NodeNetwork, root: Path, ready_timeout: float = 60.0) -> None:
        self.network = network
        self.root = Path(root)
        self.state = Path("/run") / f"md-containerd-{secrets.token_hex(3)}"
        self.socket = self.state / "containerd.sock"
        self.ready_timeout = ready_timeout
        self.log_path = self.root.parent / f"{self.root.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        # The runc shim and runc are found on PATH: .cache/bin first.
        return {**os.environ, "PATH": harness_path()}

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net={self.network.path}"]

    def start(self) -> Containerd:
        binary = BIN_DIR / "containerd"
        if not binary.is_file():
            raise FileNotFoundError(f"containerd not found at {binary}; run `make containerd`")
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        config = self.root.parent / f"{self.root.name}.toml"
        config.write_text(containerd_config(self.root / "root", self.state / "state",
                                            self.socket), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*self.nsenter(), str(binary), "--config", str(config)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env())
        deadline = time.monotonic() + self.ready_timeout
        while self.ctr("version", check=False).returncode != 0:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start; see {self.log_path}")
            time.sleep(0.2)
        return self

    def ctr(self, *args: str, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this containerd, inside the node's namespace."""
        result = subprocess.run(
            [*self.nsenter(), str(BIN_DIR / "ctr"), "--address", str(self.socket), "-n",
             NAMESPACE, *args], capture_output=True, text=True, timeout=timeout,
            check=False, env=self._env())
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM containerd (by pid), SIGKILL after `grace`, then remove its state."""
        process, self._process = self._process, None
        processes.stop(process, grace)
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
