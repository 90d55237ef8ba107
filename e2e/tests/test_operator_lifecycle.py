"""Operator e2e: first deploy to Available with a real inference, `kubectl get md`, delete.

Given a MiniLM ModelDeployment, when it is applied, then it becomes Available, the Service
answers an inference with the expected embedding, and `kubectl get md` says so; when it
is deleted, every child object and every runtime process is gone.
"""

from __future__ import annotations

import http.client
import urllib.error
from typing import TYPE_CHECKING

from modeldeploy_e2e import workload
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"


def test_create_becomes_available_and_answers_through_the_service(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    manifest = workload.minilm_manifest(
        NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, replicas=1
    )
    op_cluster.apply(manifest)
    status = workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300,
        "first deploy Available",
    )
    assert status["lastKnownGoodVersion"] == "v1"
    assert status["loadSeconds"]["timeToReady"] > 0
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["observedGeneration"] == 1

    ip, port = workload.service_endpoints(op_cluster.client, md_namespace, NAME)[0]
    answer = workload.infer(ip, port, "minilm", [workload.VALIDATION_INPUT],
                            netns=op_cluster.netns)
    vector = workload.embedding_of(answer)
    assert len(vector) == 384
    assert workload.cosine(vector, workload.minilm_embedding()) > 0.99

    table = op_cluster.kubectl("get", "md", NAME, "-n", md_namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "TARGET", "LKG", "READY", "PHASE",
                                "REASON", "STRATEGY", "AGE"]
    assert table[1].split()[:8] == [NAME, "v1", "v1", "v1", "1/1", "Available",
                                    "RolloutComplete", "Rolling"]

    events = op_cluster.kubectl("describe", "md", NAME, "-n", md_namespace).stdout
    assert "RolloutComplete" in events


def test_delete_removes_every_child_and_runtime_process(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    op_cluster.apply(
        workload.minilm_manifest(
            NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, replicas=1,
            validation=False,
        )
    )
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300, "Available"
    )
    endpoints = workload.service_endpoints(op_cluster.client, md_namespace, NAME)
    assert endpoints
    before = workload.children(op_cluster.client, md_namespace, NAME)
    assert before["deployments"] and before["services"] and before["configmaps"]

    op_cluster.kubectl("delete", "md", NAME, "-n", md_namespace, "--wait=true", "--timeout=60s")

    empty: dict[str, list[str]] = {"deployments": [], "services": [], "configmaps": [], "pods": []}
    workload.wait_until(
        lambda: workload.children(op_cluster.client, md_namespace, NAME) == empty, 120,
        "every child garbage-collected",
    )

    def nothing_answers() -> bool:
        for ip, port in endpoints:
            try:
                workload.runtime_status(ip, port, op_cluster.netns)
                return False
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                continue
        return True

    workload.wait_until(nothing_answers, 60, "runtime processes stopped")
