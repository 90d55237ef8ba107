"""Operator e2e: bad input refused at the door; a SIGKILLed operator resumes its rollout."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import workload
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer
from modeldeploy_e2e.traffic import Traffic

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"


def test_invalid_specs_are_refused_by_the_api_server_naming_the_field(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str
) -> None:
    good = workload.minilm_manifest(
        NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, validation=False
    )
    cases: dict[str, Callable[[dict[str, Any]], object]] = {
        "spec.replicas": lambda spec: spec.update(replicas=-1),
        "spec.strategy.rolling": lambda spec: spec.update(
            strategy={"type": "Rolling", "rolling": {"maxSurge": 0, "maxUnavailable": 0}}
        ),
        "spec.model.version": lambda spec: spec["model"].update(version="V 2!"),
        "spec.validation.expected.label": lambda spec: spec.update(
            validation={"input": "x", "expected": {"label": "POSITIVE"}}
        ),
    }
    for field, breaks in cases.items():
        manifest = json.loads(json.dumps(good))
        breaks(manifest["spec"])
        result = op_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
        assert result.returncode != 0, f"{field}: the API server accepted it"
        assert field in result.stderr, f"{field} not named in: {result.stderr}"
    assert workload.get_md(op_cluster.client, md_namespace, NAME) is None


def test_operator_killed_mid_rollout_resumes_without_duplicate_children(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    strategy = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 5}}

    def manifest(version: str) -> dict[str, Any]:
        md = workload.minilm_manifest(
            NAME, md_namespace, version=version, endpoint=minilm_s3.endpoint, replicas=1,
            strategy=strategy,
        )
        # Slow loads keep the rollout in progress long enough to kill the operator in it.
        md["spec"]["runtime"]["env"] = [
            {"name": "MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS", "value": "8"}
        ]
        return md

    op_cluster.apply(manifest("v1"))
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300, "v1 Available"
    )
    body = json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    ).encode()
    traffic = Traffic(
        op_cluster.client, md_namespace, NAME, path="/v2/models/minilm/infer", method="POST",
        body=body, headers={"Content-Type": "application/json"}, interval=0.05, timeout=10,
        ok_statuses=range(200, 300), netns=op_cluster.netns,
    )
    with traffic:
        op_cluster.apply(manifest("v2"))
        workload.wait_until(
            lambda: len(workload.children(op_cluster.client, md_namespace, NAME)["deployments"])
            == 2,
            60, "the v2 candidate Deployment created",
        )
        operator_proc.kill()
        status = workload.status_of(op_cluster.client, md_namespace, NAME)
        assert status["phase"] in ("Progressing", "Validating"), status
        operator_proc.start()
        final = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME, workload.available_at("v2"), 300,
            "v2 Available after the restart",
        )
    print(f"traffic during the restart: {traffic.report.summary()}")
    assert traffic.report.failures == 0, traffic.report.summary()
    kids = workload.children(op_cluster.client, md_namespace, NAME)
    assert len(kids["deployments"]) == 2, kids
    assert len(set(kids["deployments"])) == len(kids["deployments"])
    assert sorted(kids["services"]) == [NAME, f"{NAME}-preview"]
    assert len(kids["configmaps"]) == 2, kids
    opened = [h for h in final["history"] if h["version"] == "v2"]
    assert len(opened) == 1 and opened[0]["outcome"] == "Promoted", final["history"]
