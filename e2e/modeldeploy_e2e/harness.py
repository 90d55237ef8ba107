"""What e2e tests hold on to: a cluster (local or from $KUBECONFIG), kubectl, waits.

The pytest fixtures in e2e/conftest.py are thin wrappers around `connect()`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from modeldeploy_e2e import paths
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.nodenet import NodeNetwork
from modeldeploy_e2e.realnode import RealNodeCluster, install_project_images

JsonDict = dict[str, Any]
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold in time; the message says what was last seen."""


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0,
             interval: float = 0.3) -> T:
    """Poll `check` until it returns a truthy value; raise WaitTimeout naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (KubeError, OSError) as error:
            last_error = error
        time.sleep(interval)
    detail = f"; last error: {last_error}" if last_error else ""
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


@dataclass
class ClusterHandle:
    """A reachable cluster: kubeconfig, API client, kubectl; `local` when it is the local
    cluster on the real node."""

    kubeconfig: Path
    client: KubeClient
    local: RealNodeCluster | None = None
    started_here: bool = False
    kubectl_binary: str = field(default_factory=lambda: _kubectl_binary())
    # On the local node: its network namespace (pods, ClusterIPs and MinIO are reached from
    # inside it) and the project images' references its containerd holds.
    network: NodeNetwork | None = None
    images: dict[str, str] = field(default_factory=dict)

    @property
    def test_image(self) -> str:
        """The image the harness's own test pods run (they need python and sh): on the local
        node the project's operator image, which it holds; a public one on a cluster given
        by $KUBECONFIG."""
        return self.images.get("operator", "python:3.12-slim")

    @property
    def netns(self) -> str | None:
        """The path of the local node's network namespace; None on a cluster given by
        $KUBECONFIG (its pods are reached from this process's own namespace)."""
        return self.network.path if self.network else None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; with check, raise showing its stderr."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": paths.harness_path()}
        result = subprocess.run([self.kubectl_binary, *args], input=input, capture_output=True,
                                text=True, env=env, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.strip()}")
        return result

    def apply(self, manifest: JsonDict | str, namespace: str | None = None) -> None:
        """kubectl apply a manifest given as a dict or YAML text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=text)

    def get_json(self, *args: str) -> JsonDict:
        """kubectl get ... -o json, decoded."""
        result: JsonDict = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    def release(self) -> bool:
        """End this session's use of the local cluster; stop it if this session started it
        and no other live session uses it. Returns whether it was stopped."""
        if self.local is None:
            return False
        users = self.local.state_dir / "users"
        (users / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in users.glob("*") if p.name.isdigit()
                  and Path(f"/proc/{p.name}").exists()] if users.exists() else []
        if self.started_here and not others:
            self.local.down()
            return True
        return False

    def create_namespace(self, prefix: str = "e2e") -> str:
        """Create a uniquely named namespace and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.client.create("/api/v1/namespaces",
                           {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # Pods are refused until the controller-manager has made the default ServiceAccount.
        wait_for(f"ServiceAccount {name}/default",
                 lambda: self.client.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
                 timeout=30, interval=0.1)
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting (the namespace controller empties it)."""
        try:
            self.client.delete(f"/api/v1/namespaces/{name}")
        except KubeError as error:
            if error.status != 404:
                raise


def _kubectl_binary() -> str:
    local = paths.BIN_DIR / "kubectl"
    if local.is_file():
        return str(local)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found; run `make binaries` or put kubectl on PATH")
    return found


def connect(kubeconfig_env: str | None = None, start_timeout: float | None = None
            ) -> ClusterHandle:
    """Use the cluster named by $KUBECONFIG, or start (or reuse) the local one on the real
    node, with the project's images built and installed on it."""
    given = kubeconfig_env if kubeconfig_env is not None else os.environ.get("KUBECONFIG")
    if given:
        path = Path(given.split(os.pathsep)[0])
        return ClusterHandle(path, KubeClient.from_kubeconfig(path))
    local = RealNodeCluster()
    was_running = all(local.running().values())
    local.up(timeout=start_timeout)
    refs = install_project_images(local)
    # Parallel sessions share the cluster: each registers, and the last one out stops it.
    users = local.state_dir / "users"
    users.mkdir(exist_ok=True)
    (users / str(os.getpid())).touch()
    return ClusterHandle(local.kubeconfig, KubeClient.from_kubeconfig(local.kubeconfig), local,
                         started_here=not was_running, network=local.network, images=refs)
