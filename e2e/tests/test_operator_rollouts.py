"""Operator e2e: rolling v1->v2 and blue-green v2->v3 with traffic flowing throughout.

Every upgrade runs under the traffic helper, which sends inference requests to the
Service's ready endpoints the way kube-proxy would: not one request may fail.
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
SCALE_DOWN_DELAY = 10
BLUE_GREEN = {
    "type": "BlueGreen",
    "blueGreen": {"scaleDownDelaySeconds": SCALE_DOWN_DELAY, "previewService": True},
}


def test_rolling_upgrade_v1_to_v2_drops_no_request(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    def manifest(version: str) -> dict[str, object]:
        return workload.minilm_manifest(
            NAME, md_namespace, version=version, endpoint=minilm_s3.endpoint, replicas=2
        )

    op_cluster.apply(manifest("v1"))
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300, "v1 Available"
    )
    with workload.inference_traffic(op_cluster.client, md_namespace, NAME,
                                    netns=op_cluster.netns) as traffic:
        op_cluster.apply(manifest("v2"))
        workload.wait_for_status(
            op_cluster.client, md_namespace, NAME,
            lambda s: s.get("targetVersion") == "v2" and s.get("phase") == "Progressing",
            60, "rollout of v2 under way",
        )
        status = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME, workload.available_at("v2"), 400,
            "v2 Available",
        )
    report = traffic.report
    print(f"traffic during the upgrade: {report.summary()}")
    assert report.failures == 0, report.summary()
    assert report.successes > 20, report.summary()
    assert status["lastKnownGoodVersion"] == "v2"
    assert workload.served_versions(op_cluster.client, md_namespace, NAME, "minilm",
                                    netns=op_cluster.netns) == {"v2"}
    kids = workload.children(op_cluster.client, md_namespace, NAME)
    assert kids["deployments"] == [NAME], "Rolling keeps one Deployment"
    history = [(h["version"], h["outcome"]) for h in status["history"]]
    assert history[-2:] == [("v1", "Promoted"), ("v2", "Promoted")]


def test_blue_green_v3_waits_behind_the_preview_until_promoted_then_switches_and_scales_down(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    # autoPromote false holds the validated candidate behind the preview until the promote
    # annotation: the preview and the stable Service are compared while nothing can switch
    # (with autoPromote the switch follows validation at once, and a sample of the stable
    # Service could straddle it).
    strategy = {"type": "BlueGreen", "blueGreen": {
        "scaleDownDelaySeconds": SCALE_DOWN_DELAY, "previewService": True, "autoPromote": False}}

    def manifest(version: str) -> dict[str, object]:
        return workload.minilm_manifest(
            NAME, md_namespace, version=version, endpoint=minilm_s3.endpoint, replicas=2,
            strategy=strategy,
        )

    op_cluster.apply(manifest("v2"))
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v2"), 300, "v2 Available"
    )
    (old_deployment,) = workload.children(op_cluster.client, md_namespace, NAME)["deployments"]

    def served(service: str) -> set[str]:
        return workload.served_versions(op_cluster.client, md_namespace, service, "minilm",
                                        netns=op_cluster.netns)

    with workload.inference_traffic(op_cluster.client, md_namespace, NAME,
                                    netns=op_cluster.netns) as traffic:
        op_cluster.apply(manifest("v3"))
        waiting = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME,
            lambda s: s.get("targetVersion") == "v3" and any(
                c.get("type") == "Progressing" and c.get("reason") == "AwaitingPromotion"
                for c in s.get("conditions") or []),
            300, "v3 validated and awaiting the promote annotation",
        )
        assert waiting["currentVersion"] == "v2", waiting
        workload.wait_until(lambda: served(f"{NAME}-preview") == {"v3"}, 60,
                            "the preview answering v3")
        assert served(NAME) == {"v2"}, "the stable Service moved before the promotion"
        time.sleep(3)  # a validated candidate stays behind the preview: nothing switches
        held = workload.status_of(op_cluster.client, md_namespace, NAME)
        assert held["currentVersion"] == "v2" and served(NAME) == {"v2"}, held
        answered_before = dict(traffic.report.by_answer)
        op_cluster.kubectl("annotate", "md", NAME, "-n", md_namespace,
                           "modeldeploy.dev/promote=v3")
        status = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME, workload.available_at("v3"), 300,
            "v3 Available",
        )
    report = traffic.report
    print(f"traffic during the upgrade: {report.summary()}")
    assert report.failures == 0, report.summary()
    # Through the stable ClusterIP only v2 answered until the promotion.
    assert set(answered_before) == {"v2"}, answered_before
    assert status["lastKnownGoodVersion"] == "v3"
    assert served(NAME) == {"v3"}

    def old_scaled_down() -> bool:
        dep = op_cluster.client.get(
            f"/apis/apps/v1/namespaces/{md_namespace}/deployments/{old_deployment}"
        )
        return dep["spec"]["replicas"] == 0 and not dep.get("status", {}).get("readyReplicas")

    # The old version stays for the rollback window, then scales to zero.
    assert not old_scaled_down(), "scaled down before scaleDownDelaySeconds"
    workload.wait_until(old_scaled_down, SCALE_DOWN_DELAY + 60, "v2 scaled down after the delay")
    events = op_cluster.kubectl("describe", "md", NAME, "-n", md_namespace).stdout
    assert "Promoted" in events


def test_a_blue_green_version_on_another_port_and_its_flip_back_keep_every_service_on_its_pods(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    # Each version moves runtime.port; v3 is also broken. A Service targeting today's spec's
    # port number would send traffic to a port the selected pods do not listen on.

    def on_port(manifest: dict[str, Any], port: int) -> dict[str, Any]:
        manifest["spec"]["runtime"]["port"] = port
        return manifest

    def manifest(version: str, port: int) -> dict[str, Any]:
        return on_port(workload.minilm_manifest(
            NAME, md_namespace, version=version, endpoint=minilm_s3.endpoint, replicas=1,
            strategy=BLUE_GREEN), port)

    client = op_cluster.client
    op_cluster.apply(manifest("v1", 8080))
    workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v1"), 300,
                             "v1 Available")
    with workload.inference_traffic(client, md_namespace, NAME, netns=op_cluster.netns) as traffic:
        op_cluster.apply(manifest("v2", 9090))
        workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v2"), 300,
                                 "v2 Available on port 9090")
        broken = on_port(faults.wrong_expected_output(
            NAME, md_namespace, minilm_s3.endpoint, version="v3", replicas=1,
            strategy=BLUE_GREEN), 7070)
        op_cluster.apply(broken)
        status = workload.wait_for_status(
            client, md_namespace, NAME, lambda s: s.get("phase") == "RolledBack", 300,
            "v3 rolled back")
    report = traffic.report
    print(f"traffic across two port changes and a flip back: {report.summary()}")
    assert report.failures == 0, report.summary()
    assert report.successes > 10, report.summary()
    assert status["currentVersion"] == "v2"
    assert workload.served_versions(client, md_namespace, NAME, "minilm",
                                    netns=op_cluster.netns) == {"v2"}
    assert {port for _, port in workload.service_endpoints(client, md_namespace, NAME)} == {9090}
