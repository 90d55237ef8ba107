"""How the operator's scenarios, the demo and the operator benchmark reach a cluster: its
kubeconfig and client, and on the local node where pods reach MinIO and the operator
process (inside the node's network namespace) and which runtime image the node holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy_e2e import paths, workload
from modeldeploy_e2e.harness import ClusterHandle
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.nodenet import NodeNetwork
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer


@dataclass(frozen=True)
class Cluster:
    """How the scenarios reach the cluster."""

    kubeconfig: Path
    client: KubeClient
    # On the local node: its network namespace, its address (where MinIO listens for pods)
    # and the runtime image its containerd holds; None on a cluster given by $KUBECONFIG.
    netns: str | None = None
    node_ip: str | None = None
    runtime_image: str | None = None

    @classmethod
    def on(cls, kubeconfig: Path, client: KubeClient, network: NodeNetwork | None,
           runtime_image: str | None) -> Cluster:
        """The handle for a cluster whose node lives in `network` (None: a cluster given by
        $KUBECONFIG, reached from this process's own namespace)."""
        return cls(kubeconfig, client, netns=network.path if network else None,
                   node_ip=network.node_ip if network else None, runtime_image=runtime_image)

    def env(self) -> dict[str, str]:
        """Environment for kubectl and the operator."""
        return {**os.environ, "PATH": paths.harness_path(), "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with `check`, fail the test with its stderr on a non-zero exit."""
        result = subprocess.run(
            ["kubectl", *args], input=input, capture_output=True, text=True,
            env=self.env(), timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, manifest: dict[str, object]) -> str:
        """`kubectl apply -f -` of one manifest; return kubectl's output."""
        return self.kubectl("apply", "-f", "-", input=json.dumps(manifest)).stdout


def operator_cluster(cluster: ClusterHandle) -> Cluster:
    """How the operator scenarios (and the operator benchmark) reach a harness cluster."""
    return Cluster.on(Path(cluster.kubeconfig), cluster.client, cluster.network,
                      cluster.images.get("runtime"))


def with_crds(handle: Cluster) -> Cluster:
    """Install the project's CRDs and wait until the API server serves them."""
    handle.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                   str(paths.REPO_ROOT / "crds"))
    # Established, and the resource answering: `kubectl wait` right after the create can
    # race the CRD's own status (seen once on a loaded machine, issue 16).
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" \
        "modeldeployments.modeldeploy.dev"

    def served() -> bool:
        try:
            # A CRD just created can show `conditions: null` before its controller writes any.
            status = handle.client.get(crd_path).get("status") or {}
            conditions = status.get("conditions") or []
            if not any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in conditions):
                return False
            handle.client.get("/apis/modeldeploy.dev/v1alpha1/modeldeployments", limit="1")
        except KubeError:
            return False
        return True

    workload.wait_until(served, 60, "the ModelDeployment CRD established and served")
    return handle


def minio_for_pods(op_cluster: Cluster, data_dir: Path, **options: Any) -> MinioServer:
    """A MinIO the cluster's pods reach: on the local node's address inside its namespace
    (the host uploads through a relay); on loopback for a cluster given by $KUBECONFIG."""
    if op_cluster.netns and op_cluster.node_ip:
        return MinioServer(data_dir, host=op_cluster.node_ip, netns=op_cluster.netns, **options)
    return MinioServer(data_dir, **options)


def operator_process(op_cluster: Cluster, namespaces: list[str], log_path: Path,
                     **options: Any) -> OperatorProcess:
    """The operator as a process, where it reaches the cluster's pods (inside the real
    node's namespace) and defaulting to the runtime image the node holds."""
    return OperatorProcess(op_cluster.kubeconfig, namespaces, log_path,
                           netns=op_cluster.netns, runtime_image=op_cluster.runtime_image,
                           **options)


@contextlib.contextmanager
def fresh_namespace(op_cluster: Cluster, prefix: str) -> Iterator[str]:
    """A new namespace; afterwards its ModelDeployments are deleted, then the namespace."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    op_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        for item in op_cluster.client.get(workload.md_path(name)).get("items", []):
            with contextlib.suppress(KubeError):
                op_cluster.client.delete(workload.md_path(name, item["metadata"]["name"]))
        op_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
