"""The real operator (`modeldeploy-operator`) as a local process against a cluster.

Used by the e2e scenarios and the demo: start it, wait until kopf reports alive, stop it
gracefully, or SIGKILL it mid-rollout to prove a restart resumes from recorded state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from modeldeploy_e2e import netns as netns_io
from modeldeploy_e2e import paths
from modeldeploy_e2e.s3 import LOOPBACK, free_port


class OperatorError(RuntimeError):
    """The operator did not start, or exited early."""


class OperatorProcess:
    """One `modeldeploy-operator` process watching `namespaces` of the cluster in `kubeconfig`."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        log_path: Path,
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        netns: str | None = None,
        runtime_image: str | None = None,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.namespaces = namespaces
        self.log_path = Path(log_path)
        self.extra_args = extra_args or []
        self.env = env or {}
        # On a real node the operator runs inside the node's network namespace: it checks
        # each ready pod over HTTP, and pod addresses exist only there. The API server's
        # relay listens on the same loopback address inside and out, so one kubeconfig serves.
        self.netns = netns
        self.runtime_image = runtime_image
        self.health_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def liveness_url(self) -> str:
        """kopf's liveness endpoint of this process."""
        return f"http://{LOOPBACK}:{self.health_port}/healthz"

    def command(self) -> list[str]:
        """The command line, as the Helm chart would run it (plain logs for people)."""
        scope = [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        image = [f"--default-runtime-image={self.runtime_image}"] if self.runtime_image else []
        return [
            *(["nsenter", f"--net={self.netns}"] if self.netns else []),
            str(paths.VENV_BIN / "modeldeploy-operator"),
            *image,
            *scope,
            "--standalone",
            "--log-format=plain",
            f"--liveness={self.liveness_url}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Start the operator and wait for its liveness endpoint to answer."""
        self.health_port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": paths.harness_path(),
            "KUBECONFIG": str(self.kubeconfig),
            **self.env,
        }
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.command())}\n".encode())
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OperatorError(
                    f"modeldeploy-operator exited with code {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if self.alive():
                return self
            time.sleep(0.2)
        self.kill()
        raise OperatorError(
            f"modeldeploy-operator not alive after {timeout:.0f}s; see {self.log_path}"
        )

    def alive(self) -> bool:
        """Whether kopf's liveness endpoint answers 200."""
        return netns_io.http_ok(self.netns, self.liveness_url)

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers run, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
