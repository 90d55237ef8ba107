"""Operator e2e: a watch event the operator never got is healed by the periodic resync."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import yaml
from modeldeploy_e2e import workload
from modeldeploy_e2e.kube import KubeError
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer
from modeldeploy_e2e.tcpfreeze import FreezingRelay

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "resynced"
RESYNC_SECONDS = 20


def _through(relay_port: int, kubeconfig: Path, out: Path) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        server = urlsplit(cluster["cluster"]["server"])
        cluster["cluster"]["server"] = f"{server.scheme}://{server.hostname}:{relay_port}"
    out.write_text(yaml.safe_dump(config))
    return out


def test_a_deleted_service_the_frozen_watch_never_reported_is_recreated_by_the_resync(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, tmp_path: Path
) -> None:
    config = yaml.safe_load(op_cluster.kubeconfig.read_text())
    api_port = urlsplit(config["clusters"][0]["cluster"]["server"]).port
    assert api_port is not None
    relay = FreezingRelay(api_port)
    operator = OperatorProcess(
        _through(relay.port, op_cluster.kubeconfig, tmp_path / "kubeconfig"), [md_namespace],
        tmp_path / "operator.log", extra_args=[f"--resync-seconds={RESYNC_SECONDS}"],
    )
    service = f"/api/v1/namespaces/{md_namespace}/services/{NAME}"

    def service_exists() -> bool:
        try:
            op_cluster.client.get(service)
        except KubeError:
            return False
        return True

    try:
        with operator:
            op_cluster.apply(workload.minilm_manifest(
                NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, replicas=0,
                validation=False,
            ))
            workload.wait_until(
                lambda: service_exists()
                and workload.status_of(op_cluster.client, md_namespace, NAME).get("phase"),
                120, "the stable Service created and a phase recorded",
            )
            # Every connection the operator holds goes silent, its watches included; the
            # delete below reaches the API server directly and is never delivered.
            assert relay.freeze() >= 1
            op_cluster.client.delete(service)
            assert not service_exists()
            workload.wait_until(
                service_exists, RESYNC_SECONDS * 1.1 + 90,
                "the Service recreated by the resync's relist",
            )
    finally:
        relay.stop()
