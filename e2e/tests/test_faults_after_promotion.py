"""Blue-green after the switch: a version that goes wrong while it serves.

The version passes its own validation and the preview check, takes the traffic, then
answers wrong (the runtime's MODELDEPLOY_DEBUG_WRONG_AFTER_READY_SECONDS knob, real MiniLM
weights). The operator's check through the stable Service catches it inside
postPromotionValidationSeconds and flips the Service back to the previous version, whose
pods are still up inside scaleDownDelaySeconds; the failed version stays up, logs readable,
for abortScaleDownDelaySeconds and is then scaled to zero.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import faults, workload
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"
ABORT_DELAY = 25
STRATEGY = {
    "type": "BlueGreen",
    "blueGreen": {
        "scaleDownDelaySeconds": 300,
        "postPromotionValidationSeconds": 120,
        "abortScaleDownDelaySeconds": ABORT_DELAY,
        "previewService": True,
    },
}


def stable_selector(cluster: Cluster, ns: str) -> str:
    service = cluster.client.get(f"/api/v1/namespaces/{ns}/services/{NAME}")
    return str(service["spec"]["selector"]["modeldeploy.dev/template-hash"])


def pods_of(cluster: Cluster, ns: str, version: str) -> list[str]:
    pods = cluster.client.get(f"/api/v1/namespaces/{ns}/pods",
                              labelSelector=f"modeldeploy.dev/version={version}")["items"]
    return sorted(p["metadata"]["name"] for p in pods
                  if not p["metadata"].get("deletionTimestamp"))


def replicas_of(cluster: Cluster, ns: str, version: str) -> int:
    deployments = cluster.client.get(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        labelSelector=f"modeldeploy.dev/version={version}")["items"]
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    return int(deployments[0]["spec"]["replicas"])


def in_window(version: str) -> Any:
    def check(status: dict[str, Any]) -> bool:
        return (status.get("currentVersion") == version and status.get("phase") == "Validating")
    return check


def test_a_version_going_wrong_after_the_switch_is_flipped_back_to_the_still_running_lkg(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    client, ns = op_cluster.client, md_namespace
    op_cluster.apply(faults.good(NAME, ns, minilm_s3.endpoint, replicas=1, strategy=STRATEGY))
    workload.wait_for_status(client, ns, NAME, workload.available_at("v1"), 300, "v1 Available")
    v1_selector, v1_pods = stable_selector(op_cluster, ns), pods_of(op_cluster, ns, "v1")
    # 20 s leaves the preview check (within a second or two of Ready) a correct answer.
    drifting = faults.wrong_after_ready(NAME, ns, minilm_s3.endpoint, after_seconds=20,
                                        replicas=1, strategy=STRATEGY)
    with workload.inference_traffic(op_cluster.client, ns, NAME, netns=op_cluster.netns) as traffic:
        op_cluster.apply(drifting)
        workload.wait_for_status(client, ns, NAME, in_window("drifts"), 300,
                                 "drifts promoted and in its post-promotion window")
        assert stable_selector(op_cluster, ns) != v1_selector, "traffic never switched"
        status = workload.wait_for_status(client, ns, NAME,
                                          lambda s: s.get("phase") == "RolledBack", 120,
                                          "drifts flipped back")
        flipped_at = time.monotonic()
        # Straight after the flip, inside abortScaleDownDelaySeconds.
        candidate_replicas = replicas_of(op_cluster, ns, "drifts")
        candidate_pods = pods_of(op_cluster, ns, "drifts")
        assert stable_selector(op_cluster, ns) == v1_selector
        workload.wait_until(lambda: workload.served_versions(client, ns, NAME, "minilm",
                                                             netns=op_cluster.netns)
                            == {"v1"}, 60, "v1 serving after the flip")
    report = traffic.report
    print(f"traffic across the switch and the flip back: {report.summary()}")
    assert report.failures == 0, report.summary()
    assert report.successes > 20, report.summary()

    assert (status["currentVersion"], status["lastKnownGoodVersion"]) == ("v1", "v1")
    assert status["targetVersion"] == "drifts"
    degraded = faults.condition(status, "Degraded")
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "ValidationFailed")
    assert "failed after promotion" in degraded["message"], degraded
    assert "cosine similarity -1" in degraded["message"], degraded
    assert [(h["version"], h["outcome"]) for h in status["history"]][-1] == (
        "drifts", "RolledBack")
    # The flip went back to v1's own pods, still running inside scaleDownDelaySeconds.
    assert pods_of(op_cluster, ns, "v1") == v1_pods

    # The failed version stays up for abortScaleDownDelaySeconds with its logs readable.
    assert candidate_replicas == 1 and candidate_pods, candidate_pods
    logs = op_cluster.kubectl("logs", candidate_pods[0], "-c", "serve", "-n", ns).stdout
    assert "answers are wrong from now on" in logs, logs[-2000:]
    workload.wait_until(lambda: replicas_of(op_cluster, ns, "drifts") == 0,
                        ABORT_DELAY + 60, "the failed version scaled to zero")
    waited = time.monotonic() - flipped_at
    print(f"failed version scaled to zero {waited:.1f} s after the flip "
          f"(abortScaleDownDelaySeconds={ABORT_DELAY})")
    # RolledBack is seen within a few seconds of abortedAt; scale-down waits out the rest.
    assert waited >= ABORT_DELAY - 5, waited
    assert replicas_of(op_cluster, ns, "v1") == 1
