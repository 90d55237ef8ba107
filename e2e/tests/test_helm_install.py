"""The operator installed with `helm install`, running as a pod under the chart's own RBAC.

The create and rolling-upgrade scenarios are the ones the local-process mode runs
(test_operator_lifecycle / test_operator_rollouts), called here with the Helm release in
place of the operator process; the flip-back scenario and the RBAC proofs are new. A
scenario passing here means the chart's ServiceAccount, Role and in-cluster login carry
the operator through it.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from modeldeploy_e2e import helm, workload
from modeldeploy_e2e.helm import HelmRelease
from modeldeploy_e2e.s3 import MinioServer

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"


def scenarios(module: str) -> ModuleType:
    """A sibling scenario module, loaded by path (pytest runs with --import-mode=importlib,
    so test folders are not on sys.path); loaded as a plain module, it is not collected."""
    spec = importlib.util.spec_from_file_location(
        f"helm_mode_{module}", Path(__file__).with_name(f"{module}.py")
    )
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


lifecycle = scenarios("test_operator_lifecycle")
rollouts = scenarios("test_operator_rollouts")


def operator_pod(cluster: Cluster, release: HelmRelease) -> dict[str, Any]:
    """The release's one running operator pod."""
    selector = f"{helm.INSTANCE_LABEL}={release.name},app.kubernetes.io/component=operator"
    pods = cluster.client.get(
        f"/api/v1/namespaces/{release.namespace}/pods", labelSelector=selector
    )["items"]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, f"expected one running operator pod, saw {len(running)}"
    return dict(running[0])


def operator_log(cluster: Cluster, release: HelmRelease) -> str:
    """The operator container's output so far."""
    pod = operator_pod(cluster, release)["metadata"]["name"]
    return helm.container_log(cluster.kubeconfig, release.namespace, pod, "operator")


@pytest.fixture
def helm_operator(op_cluster: Cluster, md_namespace: str) -> Iterator[HelmRelease]:
    """The chart installed in the test's namespace, watching only that namespace."""
    release = HelmRelease(
        f"md-{secrets.token_hex(3)}", md_namespace, op_cluster.kubeconfig,
        set_values={"watchNamespaces": "{" + md_namespace + "}"},
    )
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


def test_helm_installed_operator_is_a_pod_whose_permissions_pass_helm_test(
    op_cluster: Cluster, helm_operator: HelmRelease
) -> None:
    pod = operator_pod(op_cluster, helm_operator)
    assert pod["spec"]["serviceAccountName"] == f"{helm_operator.name}-modeldeploy"
    result = helm_operator.test()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout


def test_helm_installed_operator_creates_an_available_model_deployment(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, helm_operator: HelmRelease
) -> None:
    lifecycle.test_create_becomes_available_and_answers_through_the_service(
        op_cluster, minilm_s3, md_namespace, helm_operator  # type: ignore[arg-type]
    )
    log = operator_log(op_cluster, helm_operator)
    # Not a bare "403": millisecond timestamps contain it.
    assert "HTTP 403" not in log and "Forbidden" not in log, "the chart's RBAC fell short"


def test_helm_installed_operator_rolls_v1_to_v2_without_dropping_a_request(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, helm_operator: HelmRelease
) -> None:
    rollouts.test_rolling_upgrade_v1_to_v2_drops_no_request(
        op_cluster, minilm_s3, md_namespace, helm_operator  # type: ignore[arg-type]
    )


def test_helm_installed_operator_flips_a_broken_version_back_to_last_known_good(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, helm_operator: HelmRelease
) -> None:
    def manifest(version: str) -> dict[str, object]:
        return workload.minilm_manifest(
            NAME, md_namespace, version=version, endpoint=minilm_s3.endpoint, replicas=1,
            validation=False,
        )

    op_cluster.apply(manifest("v1"))
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300, "v1 Available"
    )
    # "broken" has no objects in the bucket: the fetch init container fails.
    with workload.inference_traffic(op_cluster.client, md_namespace, NAME,
                                    netns=op_cluster.netns) as traffic:
        op_cluster.apply(manifest("broken"))
        status = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME,
            lambda s: s.get("phase") == "RolledBack", 300, "the broken version rolled back",
        )
    assert status["currentVersion"] == "v1"
    assert status["lastKnownGoodVersion"] == "v1"
    assert traffic.report.failures == 0, traffic.report.summary()
    assert workload.served_versions(op_cluster.client, md_namespace, NAME, "minilm",
                                    netns=op_cluster.netns) == {"v1"}
    history = [(h["version"], h["outcome"]) for h in status["history"]]
    assert history[-1] == ("broken", "RolledBack")


def test_a_verb_missing_from_the_chart_stops_the_rollout_and_is_named(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, helm_operator: HelmRelease
) -> None:
    role = f"{helm_operator.name}-modeldeploy"
    rules = op_cluster.client.get(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{md_namespace}/roles/{role}"
    )["rules"]
    for rule in rules:
        if rule["resources"] == ["deployments"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
    op_cluster.kubectl("patch", "role", role, "-n", md_namespace, "--type=merge",
                       "-p", json.dumps({"rules": rules}))

    # The chart's own check names the missing verb before any model is deployed.
    result = helm_operator.test()
    assert result.returncode != 0
    check_log = helm.container_log(
        op_cluster.kubeconfig, md_namespace, f"{helm_operator.name}-modeldeploy-test", "check"
    )
    assert f"missing permission: patch apps/deployments in {md_namespace}" in check_log

    # And the operator, lacking it, can never create the Deployment: no Available, a 403
    # in its log naming the verb.
    op_cluster.apply(workload.minilm_manifest(
        NAME, md_namespace, version="v1", endpoint=minilm_s3.endpoint, replicas=1,
        validation=False,
    ))
    workload.wait_until(
        lambda: 'cannot patch resource "deployments"' in operator_log(op_cluster, helm_operator),
        60, "the operator's 403 naming the missing verb",
    )
    assert workload.status_of(op_cluster.client, md_namespace, NAME).get("phase") != "Available"
    assert workload.children(op_cluster.client, md_namespace, NAME)["deployments"] == []

    # Restoring the chart's rules (helm upgrade) lets the same resource through.
    helm_operator.upgrade()
    workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300,
        "Available once the chart's RBAC is restored",
    )
