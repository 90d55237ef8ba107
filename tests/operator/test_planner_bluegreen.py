"""Planner, BlueGreen strategy: one transition per test, driven through the in-memory cluster."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning import draft
from modeldeploy_operator.planning.actions import (
    DeleteService,
    EnsureService,
    RunValidation,
    ScaleDeployment,
)

from .conftest import NAME, Cluster, ClusterFactory

PREVIEW = naming.preview_service_name(NAME)


def strategy(**settings: Any) -> dict[str, Any]:
    return {"type": "BlueGreen", "blueGreen": settings}


def conditions(status: ModelDeploymentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def deployed(new_cluster: ClusterFactory, **settings: Any) -> Cluster:
    cluster = new_cluster(strategy=strategy(**settings))
    cluster.settle(steps=3)
    assert cluster.status.phase == "Available", cluster.status.message
    return cluster


def test_first_deploy_gets_no_stable_service_until_validated_through_the_preview(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(strategy=strategy())
    h1 = cluster.hash_of("v1")
    plan = cluster.reconcile()
    assert plan.status.phase == "Progressing"
    assert cluster.stable_selector is None
    assert cluster.services[PREVIEW] == h1
    assert f"{NAME}-{h1}" in cluster.deployments

    cluster.advance(5)  # pods ready
    plan = cluster.reconcile()
    assert plan.status.phase == "Validating"
    assert RunValidation(h1, "preview") in plan.actions
    assert cluster.stable_selector is None

    cluster.advance(1)  # validation result arrives
    plan = cluster.reconcile()
    assert EnsureService(NAME, h1) in plan.actions
    assert plan.status.phase == "Available"
    assert plan.status.last_known_good_version == "v1"
    assert plan.status.ready == "2/2"
    assert plan.status.rollout.promoted_at is not None


def test_upgrade_switches_the_selector_after_validation_and_keeps_old_pods_for_the_delay(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, scaleDownDelaySeconds=30)
    h1, h2 = cluster.hash_of("v1"), cluster.hash_of("v2")
    cluster.set_version("v2")
    cluster.reconcile()
    cluster.advance(5)
    cluster.reconcile()  # ready -> validating
    assert cluster.stable_selector == h1
    cluster.advance(1)
    plan = cluster.reconcile()
    assert cluster.stable_selector == h2
    assert plan.status.phase == "Available"
    assert plan.status.current_version == "v2"
    old = cluster.deployments[f"{NAME}-{h1}"]
    assert old.replicas == 2  # the rollback window
    cluster.advance(20)
    cluster.reconcile()
    assert old.replicas == 2
    cluster.advance(15)
    plan = cluster.reconcile()
    assert ScaleDeployment(f"{NAME}-{h1}", 0) in plan.actions
    assert old.replicas == 0


def test_candidate_failing_preview_validation_never_gets_traffic_and_is_scaled_down_later(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, abortScaleDownDelaySeconds=30)
    h1, h2 = cluster.hash_of("v1"), cluster.hash_of("v2")
    cluster.set_version("v2", "preview_bad")
    for _ in range(3):
        cluster.reconcile()
        cluster.advance(1)
    plan = cluster.reconcile()
    status = plan.status
    assert cluster.stable_selector == h1
    assert status.phase == "RolledBack"
    assert (status.current_version, status.target_version) == ("v1", "v2")
    assert conditions(status)["Degraded"] == ("True", "ValidationFailed")
    assert conditions(status)["Validated"] == ("False", "ValidationFailed")
    assert "cosine 0.10 < 0.99" in status.message
    candidate = cluster.deployments[f"{NAME}-{h2}"]
    assert candidate.replicas == 2  # logs still reachable
    cluster.advance(31)
    cluster.reconcile()
    assert candidate.replicas == 0
    assert cluster.stable_selector == h1
    assert cluster.deployments[f"{NAME}-{h1}"].replicas == 2


def test_crash_looping_candidate_leaves_the_stable_service_alone(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=3)
    assert cluster.stable_selector == cluster.hash_of("v1")
    assert cluster.status.phase == "RolledBack"
    assert conditions(cluster.status)["Degraded"] == ("True", "CrashLoop")


def test_manual_promotion_waits_for_the_annotation_naming_the_version(
    new_cluster: ClusterFactory,
) -> None:
    # The first version is promoted at once: nothing serves that it could hurt.
    cluster = deployed(new_cluster, autoPromote=False)
    cluster.set_version("v2")
    cluster.settle(steps=3)
    status = cluster.status
    assert status.phase == "Progressing"
    assert conditions(status)["Progressing"] == ("True", "AwaitingPromotion")
    assert conditions(status)["Validated"] == ("True", "ValidationPassed")
    assert "modeldeploy.dev/promote=v2" in status.message
    assert cluster.stable_selector == cluster.hash_of("v1")
    cluster.advance(10_000)  # waiting for a person is not a stalled rollout
    assert cluster.reconcile().status.phase == "Progressing"
    cluster.promote = "v2"
    cluster.reconcile()
    assert cluster.stable_selector == cluster.hash_of("v2")
    assert cluster.status.phase == "Available"


def test_failure_in_the_post_promotion_window_flips_back_while_old_pods_are_up(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, postPromotionValidationSeconds=20, scaleDownDelaySeconds=30)
    h1, h2 = cluster.hash_of("v1"), cluster.hash_of("v2")
    cluster.set_version("v2", "late_bad")
    for _ in range(2):
        cluster.reconcile()
        cluster.advance(1)
    plan = cluster.reconcile()
    assert cluster.stable_selector == h2
    assert plan.status.phase == "Validating"
    assert plan.status.last_known_good_version == "v1"  # not proven yet
    assert RunValidation(h2, "stable") in plan.actions
    cluster.advance(1)
    plan = cluster.reconcile()
    assert EnsureService(NAME, h1) in plan.actions
    assert cluster.stable_selector == h1
    assert cluster.deployments[f"{NAME}-{h1}"].replicas == 2
    assert plan.status.phase == "RolledBack"
    assert plan.status.current_version == "v1"
    assert plan.status.rollout.failed_versions == ["v2"]


def test_version_passing_the_post_promotion_window_becomes_last_known_good(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, postPromotionValidationSeconds=20)
    cluster.set_version("v2")
    for _ in range(4):
        cluster.reconcile()
        cluster.advance(1)
    assert cluster.status.phase == "Validating"
    assert cluster.status.last_known_good_version == "v1"
    cluster.advance(20)
    plan = cluster.reconcile()
    assert plan.status.phase == "Available"
    assert plan.status.last_known_good_version == "v2"
    assert plan.status.history[-1].outcome == "Promoted"


def test_old_deployments_beyond_the_revision_history_are_deleted(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, scaleDownDelaySeconds=0)
    for version in ("v2", "v3", "v4", "v5"):
        cluster.set_version(version)
        cluster.settle(steps=4)
        assert cluster.status.phase == "Available"
    names = sorted(cluster.deployments)
    idle = [d for d in cluster.deployments.values() if d.replicas == 0]
    assert len(idle) == draft.REVISION_HISTORY_LIMIT
    assert {d.version for d in idle} == {"v3", "v4"}
    assert f"{NAME}-{cluster.hash_of('v5')}" in names


def test_disabling_the_preview_service_deletes_it(new_cluster: ClusterFactory) -> None:
    cluster = deployed(new_cluster)
    assert PREVIEW in cluster.services
    cluster.raw = {**cluster.raw, "strategy": strategy(previewService=False)}
    plan = cluster.reconcile()
    assert DeleteService(PREVIEW) in plan.actions
    assert PREVIEW not in cluster.services


def test_superseded_candidate_is_scaled_down_at_once(new_cluster: ClusterFactory) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    cluster.set_version("v3")
    plan = cluster.reconcile()
    assert ScaleDeployment(f"{NAME}-{cluster.hash_of('v2')}", 0) in plan.actions
    assert cluster.status.history[-2].outcome == "Superseded"
    cluster.settle(steps=3)
    assert cluster.status.current_version == "v3"


def test_reverting_to_last_known_good_after_a_failed_candidate_is_available(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=2)
    cluster.set_version("v1")
    plan = cluster.reconcile()
    assert plan.status.phase == "Available"
    assert conditions(plan.status)["Progressing"] == ("False", "RevertedToLastKnownGood")
    assert cluster.stable_selector == cluster.hash_of("v1")


def test_switching_from_rolling_to_blue_green_keeps_serving_the_rolling_deployment(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster()
    cluster.settle(steps=2)
    assert cluster.status.phase == "Available"
    cluster.raw = {**cluster.raw, "strategy": strategy()}
    plan = cluster.reconcile()
    assert plan.status.phase == "Available"
    assert cluster.stable_selector == cluster.hash_of("v1")
    assert cluster.deployments[NAME].replicas == 2
