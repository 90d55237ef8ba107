"""An OCI registry (CNCF distribution, built by `make registry`) on loopback.

    with Registry(tmp_path / "registry") as registry:
        registry.address            # 127.0.0.1:PORT, for `make push REGISTRY=...`
        registry.manifest("modeldeploy/operator", "0.1.0")
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from modeldeploy_e2e import processes
from modeldeploy_e2e.paths import BIN_DIR
from modeldeploy_e2e.s3 import LOOPBACK, free_port

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


class RegistryError(RuntimeError):
    """The registry binary is missing or the server did not become ready."""


def registry_config(root: Path, address: str) -> str:
    """The registry's YAML config (JSON is YAML): filesystem storage, one address."""
    return json.dumps({
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": address},
    }, indent=2)


class Registry:
    """Run the registry on a loopback port for the duration of a `with` block; the
    storage directory is kept (a later run reuses the blobs)."""

    def __init__(self, data_dir: Path, *, port: int | None = None,
                 binary: Path | None = None, ready_timeout: float = 30.0,
                 netns: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        # A network namespace path: the registry then listens on that namespace's loopback
        # (for containerd there), and only processes entering it reach it.
        self.netns = netns
        self.port = port if port is not None else free_port()
        self.binary = binary or BIN_DIR / "registry"
        self.ready_timeout = ready_timeout
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Registry:
        if not self.binary.is_file():
            raise RegistryError(f"registry binary not found at {self.binary}; run `make registry`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}.yml"
        config.write_text(registry_config(self.data_dir, self.address), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*self._nsenter(), str(self.binary), "serve", str(config)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _nsenter(self) -> list[str]:
        return ["nsenter", f"--net={self.netns}"] if self.netns else []

    def _answers(self) -> bool:
        url = f"http://{self.address}/v2/"
        if self.netns:
            probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=1)"
            return subprocess.run([*self._nsenter(), sys.executable, "-c", probe],
                                  capture_output=True, check=False).returncode == 0
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RegistryError(f"registry exited with code {self._process.returncode}; "
                                    f"see {self.log_path}")
            if self._answers():
                return
            time.sleep(0.1)
        raise RegistryError(f"registry at {self.address} not ready after "
                            f"{self.ready_timeout:.0f}s; see {self.log_path}")

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(digest, manifest) of `repository:reference`, as a client pulling it sees them."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_TYPES})
        with urllib.request.urlopen(request, timeout=10) as answer:
            digest = answer.headers["Docker-Content-Digest"]
            return str(digest), json.loads(answer.read())

    def blob(self, repository: str, digest: str) -> bytes:
        """One blob (e.g. the image config) by digest."""
        url = f"http://{self.address}/v2/{repository}/blobs/{digest}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return bytes(answer.read())

    def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        processes.stop(process, grace)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground until interrupted: `make push REGISTRY=127.0.0.1:PORT`."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.registry")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path,
                        default=BIN_DIR.parent / "images" / "registry")
    args = parser.parse_args(argv)
    with Registry(args.data_dir, port=args.port) as registry:
        print(f"registry on {registry.address}; make push REGISTRY={registry.address}",
              flush=True)
        signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        signal.sigwait(signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
