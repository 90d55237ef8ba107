"""Operator e2e: serving pods on a GPU-like node pool (issue 13), against the real API server.

The node is tainted and labelled like a GPU pool. A ModelDeployment without the toleration
says the scheduler's reason within seconds; with it (and S3 credentials given as env
valueFrom secretKeyRef, so the fetch works only if the Secret's values reached the pod) it
becomes Available; `kubectl scale md` moves it to 3 and back; its PodDisruptionBudget refuses
an eviction that would leave no ready pod. The CRD refuses a malformed toleration or affinity
naming the field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from modeldeploy_e2e import workload
from modeldeploy_e2e.kube import KubeError
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer
from modeldeploy_e2e.workload import SECRET

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"
TAINT_KEY = "nvidia.com/gpu"
POOL_LABEL = ("modeldeploy.dev/e2e-pool", "gpu")
# Seconds within which the scheduler's reason must show in the status.
SEEN_WITHIN = 30


@pytest.fixture
def gpu_pool(op_cluster: Cluster) -> Iterator[str]:
    """The cluster's only node, tainted and labelled like a GPU node pool; restored after."""
    nodes = op_cluster.client.get("/api/v1/nodes")["items"]
    node = nodes[0]["metadata"]["name"]
    op_cluster.kubectl("taint", "nodes", node, f"{TAINT_KEY}=present:NoSchedule", "--overwrite")
    op_cluster.kubectl("label", "nodes", node, f"{POOL_LABEL[0]}={POOL_LABEL[1]}", "--overwrite")
    try:
        yield node
    finally:
        op_cluster.kubectl("taint", "nodes", node, f"{TAINT_KEY}:NoSchedule-", check=False)
        op_cluster.kubectl("label", "nodes", node, f"{POOL_LABEL[0]}-", check=False)


def gpu_manifest(namespace: str, endpoint: str, tolerate: bool) -> dict[str, Any]:
    manifest = workload.minilm_manifest(
        NAME, namespace, version="v1", endpoint=endpoint, replicas=1
    )
    spec = manifest["spec"]
    # Credentials as env valueFrom instead of credentialsSecret: the fetch from S3 succeeds
    # only if the Secret's values reached the pod.
    spec["model"]["source"]["s3"].pop("credentialsSecret")
    spec["runtime"]["env"] = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    spec["pod"] = {
        "nodeSelector": {POOL_LABEL[0]: POOL_LABEL[1]},
        "labels": {"team": "search"},
        "annotations": {"example.com/cost-center": "ml"},
    }
    if tolerate:
        spec["pod"]["tolerations"] = [
            {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        ]
    spec["disruption"] = {"minAvailable": 1}
    return manifest


def progressing(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Progressing"), {})


def serving_pods(op_cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"modeldeploy.dev/modeldeployment={NAME}"
    pods = op_cluster.client.get(
        f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_malformed_toleration_or_affinity_is_refused_naming_the_field(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str
) -> None:
    bad = {
        "tolerations": [{"key": TAINT_KEY, "tolerationSeconds": "soon"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool"}]}]}}},
    }
    manifest = gpu_manifest(md_namespace, minilm_s3.endpoint, tolerate=False)
    manifest["spec"]["pod"] = bad
    result = op_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0, result.stdout
    assert "spec.pod.tolerations[0].tolerationSeconds" in result.stderr, result.stderr
    assert (
        "spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator" in result.stderr
    ), result.stderr
    # An unknown field inside a toleration is refused too (kubectl validates strictly).
    manifest["spec"]["pod"] = {"tolerations": [{"key": TAINT_KEY, "efect": "NoSchedule"}]}
    result = op_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and "efect" in result.stderr, result.stderr
    assert workload.get_md(op_cluster.client, md_namespace, NAME) is None


def test_a_gpu_pool_deployment_schedules_scales_and_is_protected_from_eviction(
    op_cluster: Cluster,
    minilm_s3: MinioServer,
    md_namespace: str,
    operator_proc: OperatorProcess,
    gpu_pool: str,
) -> None:
    client = op_cluster.client
    # Without the toleration: the scheduler's own reason, within seconds.
    op_cluster.apply(gpu_manifest(md_namespace, minilm_s3.endpoint, tolerate=False))
    started = time.monotonic()
    status = workload.wait_for_status(
        client, md_namespace, NAME,
        lambda s: progressing(s).get("reason") == "Unschedulable",
        SEEN_WITHIN, "Progressing reason Unschedulable",
    )
    print(f"Unschedulable reported after {time.monotonic() - started:.1f}s")
    assert "untolerated taint" in progressing(status)["message"], status
    assert "version v1" in progressing(status)["message"], status
    listed = op_cluster.kubectl("get", "md", NAME, "-n", md_namespace).stdout
    assert "Unschedulable" in listed, listed

    # With it: scheduled on the pool, the Secret-backed credentials fetch the model.
    op_cluster.apply(gpu_manifest(md_namespace, minilm_s3.endpoint, tolerate=True))
    status = workload.wait_for_status(
        client, md_namespace, NAME, workload.available_at("v1"), 400, "v1 Available"
    )
    (pod,) = [p for p in serving_pods(op_cluster, md_namespace) if p["status"].get("podIP")]
    assert pod["spec"]["nodeName"] == gpu_pool
    assert pod["metadata"]["labels"]["team"] == "search"
    assert pod["metadata"]["annotations"]["example.com/cost-center"] == "ml"
    assert status["selector"] == f"modeldeploy.dev/modeldeployment={NAME}"

    # One ready pod, minAvailable 1: the Eviction API refuses to take it.
    name = pod["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": md_namespace},
    }
    budget_path = f"/apis/policy/v1/namespaces/{md_namespace}/poddisruptionbudgets/{NAME}"
    workload.wait_until(
        lambda: client.get(budget_path).get("status", {}).get("currentHealthy") == 1 or None,
        60, "the PodDisruptionBudget counts the ready pod",
    )
    with pytest.raises(KubeError) as refused:
        client.create(f"/api/v1/namespaces/{md_namespace}/pods/{name}/eviction", eviction)
    assert refused.value.status == 429, refused.value

    # kubectl scale md: the scale subresource drives spec.replicas, and back. (The
    # untolerated template was superseded by the tolerated one; scaling adds no entry.)
    history = [(h["templateHash"], h["outcome"]) for h in status["history"]]
    assert [outcome for _, outcome in history] == ["Superseded", "Promoted"], history
    op_cluster.kubectl("scale", "md", NAME, "-n", md_namespace, "--replicas=3")
    status = workload.wait_for_status(
        client, md_namespace, NAME,
        lambda s: s.get("ready") == "3/3" and s.get("phase") == "Available", 300, "3/3 ready",
    )
    assert [(h["templateHash"], h["outcome"]) for h in status["history"]] == history
    scale = client.get(workload.md_path(md_namespace, NAME) + "/scale")
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == f"modeldeploy.dev/modeldeployment={NAME}"
    op_cluster.kubectl("scale", "md", NAME, "-n", md_namespace, "--replicas=1")
    status = workload.wait_for_status(
        client, md_namespace, NAME,
        lambda s: s.get("ready") == "1/1" and s.get("phase") == "Available", 120, "back to 1/1",
    )
    assert [(h["templateHash"], h["outcome"]) for h in status["history"]] == history


def test_a_horizontal_pod_autoscaler_drives_the_replica_count(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    # The autoscaler controller of the real kube-controller-manager, through the scale
    # subresource. No metrics server runs here: minReplicas above the current count is
    # the one decision it makes without metrics, and it is enough to see who drives whom.
    client = op_cluster.client
    op_cluster.apply(workload.minilm_manifest(
        NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, replicas=1,
        validation=False))
    workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v1"), 300,
                             "v1 Available at 1 replica")
    op_cluster.apply({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": md_namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "modeldeploy.dev/v1alpha1",
                               "kind": "ModelDeployment", "name": NAME},
            "minReplicas": 2,
            "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })
    status = workload.wait_for_status(
        client, md_namespace, NAME,
        lambda s: s.get("ready") == "2/2" and s.get("phase") == "Available", 300,
        "2/2 ready, scaled by the autoscaler")
    md = client.get(workload.md_path(md_namespace, NAME))
    assert md["spec"]["replicas"] == 2
    assert status["currentVersion"] == "v1"
    assert [h["outcome"] for h in status["history"]] == ["Promoted"], "scaling is no rollout"
