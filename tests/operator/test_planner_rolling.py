"""Planner, Rolling strategy: one transition per test, driven through the in-memory cluster."""

from __future__ import annotations

import dataclasses

import pytest
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning import draft, planner
from modeldeploy_operator.planning.actions import EmitEvent, EnsureDeployment, EnsureService
from modeldeploy_operator.planning.observations import FailureKind, FailureSignal

from .conftest import NAME, Cluster, ClusterFactory


def conditions(status: ModelDeploymentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def available(cluster: Cluster, version: str) -> None:
    assert cluster.status.phase == "Available", cluster.status.message
    assert cluster.status.current_version == version
    assert cluster.status.last_known_good_version == version


def deployed(new_cluster: ClusterFactory, **overrides: object) -> Cluster:
    cluster = new_cluster(**overrides)
    cluster.settle(steps=2)
    available(cluster, "v1")
    return cluster


def test_first_deploy_is_progressing_until_every_pod_is_ready_then_available(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster()
    plan = cluster.reconcile()
    assert plan.status.phase == "Progressing"
    assert EnsureService(NAME, None) in plan.actions
    assert EnsureDeployment(NAME, cluster.hash_of("v1"), 2) in plan.actions
    assert plan.status.current_version is None
    assert conditions(plan.status)["Ready"] == ("False", "WaitingForReady")
    assert plan.requeue_after is not None

    cluster.advance(5)
    plan = cluster.reconcile()
    available(cluster, "v1")
    assert plan.status.ready == "2/2"
    assert plan.status.rollout.stable_hash == cluster.hash_of("v1")
    assert conditions(plan.status) == {
        "Ready": ("True", "AsExpected"),
        "Progressing": ("False", "RolloutComplete"),
        "Validated": ("True", "ValidationPassed"),
        "Degraded": ("False", "AsExpected"),
    }
    assert [h.outcome for h in plan.status.history] == ["Promoted"]
    assert [e.reason for e in cluster.events] == ["NewVersion", "RolloutComplete"]


def test_good_upgrade_moves_the_single_deployment_to_the_new_template(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2")
    plan = cluster.reconcile()
    assert plan.status.phase == "Progressing"
    # Traffic stays on the proven version until the new one is proven.
    assert plan.status.current_version == "v1"
    assert plan.status.target_version == "v2"
    assert list(cluster.deployments) == [NAME]
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v2")
    cluster.advance(5)
    cluster.reconcile()
    available(cluster, "v2")
    assert [h.version for h in cluster.status.history] == ["v1", "v2"]


def test_crash_looping_version_flips_the_template_back_to_last_known_good(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.reconcile()
    cluster.advance(5)
    plan = cluster.reconcile()
    status = plan.status
    assert EnsureDeployment(NAME, cluster.hash_of("v1"), 2) in plan.actions
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v1")
    assert status.phase == "RolledBack"
    assert (status.current_version, status.target_version) == ("v1", "v2")
    assert status.last_known_good_version == "v1"
    assert conditions(status)["Degraded"] == ("True", "CrashLoop")
    assert "container exited 1" in status.message
    assert "retry" in status.message
    assert status.rollout.failed_versions == ["v2"]
    assert status.history[-1].outcome == "RolledBack"
    assert any(e.type == "Warning" and e.reason == "CrashLoop" for e in cluster.events)


def test_failed_version_is_not_retried_while_the_spec_still_asks_for_it(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=3)
    for _ in range(5):
        cluster.advance(60)
        plan = cluster.reconcile()
        assert plan.status.phase == "RolledBack"
        assert not any(
            isinstance(a, EnsureDeployment) and a.template_hash == cluster.hash_of("v2")
            for a in plan.actions
        )
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v1")
    assert cluster.status.ready == "2/2"
    assert conditions(cluster.status)["Ready"] == ("True", "AsExpected")


def test_retry_annotation_rolls_the_failed_version_out_again(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=3)
    cluster.behaviours["v2"] = "good"  # e.g. the bucket was fixed
    cluster.retry = "1"
    plan = cluster.reconcile()
    assert plan.status.phase == "Progressing"
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v2")
    cluster.settle(steps=2)
    available(cluster, "v2")
    # The same token again is not a new request.
    assert cluster.status.rollout.retry_token == "1"


def test_reverting_the_spec_to_last_known_good_returns_to_available_without_new_pods(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=3)
    pods_before = cluster.deployments[NAME]
    cluster.set_version("v1")
    plan = cluster.reconcile()
    available(cluster, "v1")
    assert cluster.deployments[NAME] is pods_before  # same template: nothing restarted
    assert conditions(plan.status)["Progressing"] == ("False", "RevertedToLastKnownGood")
    assert conditions(plan.status)["Degraded"] == ("False", "AsExpected")
    assert any(
        isinstance(a, EmitEvent) and a.reason == "RevertedToLastKnownGood" for a in plan.actions
    )


def test_version_that_never_gets_ready_fails_at_the_progress_deadline(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, progressDeadlineSeconds=60)
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    cluster.advance(59)
    assert cluster.reconcile().status.phase == "Progressing"
    cluster.advance(2)
    plan = cluster.reconcile()
    assert plan.status.phase == "RolledBack"
    assert conditions(plan.status)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert "progressDeadlineSeconds=60" in plan.status.message
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v1")


def test_runtime_validation_failure_is_reported_as_validation_failed(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "wrong")
    cluster.settle(steps=2)
    assert cluster.status.phase == "RolledBack"
    assert conditions(cluster.status)["Degraded"] == ("True", "ValidationFailed")
    assert conditions(cluster.status)["Validated"][0] == "False"
    assert "cosine 0.12 < 0.99" in cluster.status.message


def test_first_deploy_failure_is_failed_with_nothing_to_flip_to(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(behaviours={"v1": "crash"})
    cluster.settle(steps=3)
    status = cluster.status
    assert status.phase == "Failed"
    assert status.current_version is None
    assert status.last_known_good_version is None
    assert "no earlier version to flip back to" in status.message
    assert conditions(status)["Ready"][0] == "False"
    assert conditions(status)["Degraded"] == ("True", "CrashLoop")
    assert status.history[-1].outcome == "Failed"


def test_new_version_mid_rollout_supersedes_the_unfinished_one(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    cluster.advance(5)
    cluster.reconcile()
    cluster.set_version("v3")
    cluster.settle(steps=2)
    available(cluster, "v3")
    outcomes = [(h.version, h.outcome) for h in cluster.status.history]
    assert outcomes == [("v1", "Promoted"), ("v2", "Superseded"), ("v3", "Promoted")]
    assert cluster.status.rollout.failed_versions == []


def test_scale_to_zero_is_available_with_nothing_ready(new_cluster: ClusterFactory) -> None:
    cluster = deployed(new_cluster)
    cluster.set_replicas(0)
    assert cluster.reconcile().status.phase == "Available"
    cluster.advance(5)
    plan = cluster.reconcile()
    assert plan.status.phase == "Available"
    assert plan.status.ready == "0/0"
    assert cluster.deployments[NAME].replicas == 0
    assert conditions(plan.status)["Progressing"][0] == "False"


def test_version_change_while_scaled_to_zero_waits_then_rolls_out_on_scale_up(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, progressDeadlineSeconds=60)
    cluster.set_replicas(0)
    cluster.reconcile()
    cluster.set_version("v2")
    cluster.reconcile()
    cluster.advance(600)  # longer than the deadline: the clock must not run at zero pods
    plan = cluster.reconcile()
    assert plan.status.phase == "Pending"
    assert plan.status.last_known_good_version == "v1"
    cluster.set_replicas(2)
    assert cluster.reconcile().status.phase == "Progressing"
    cluster.settle(steps=2)
    available(cluster, "v2")


def test_same_input_gives_the_same_plan(new_cluster: ClusterFactory) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2")
    observed = cluster.observe()
    first = planner.plan(NAME, cluster.spec, cluster.status, observed)
    second = planner.plan(NAME, cluster.spec, cluster.status, observed)
    assert first == second


def test_condition_transition_time_moves_only_when_its_status_changes(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    before = {c.type: c.last_transition_time for c in cluster.status.conditions}
    cluster.advance(30)
    cluster.set_version("v2")
    cluster.reconcile()
    after = {c.type: c.last_transition_time for c in cluster.status.conditions}
    assert after["Degraded"] == before["Degraded"]  # still False
    assert after["Progressing"] != before["Progressing"]  # False -> True
    assert all(c.observed_generation == cluster.generation for c in cluster.status.conditions)


def test_switching_from_blue_green_to_rolling_retires_the_old_deployments_once_available(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(strategy={"type": "BlueGreen"})
    cluster.settle(steps=3)
    blue_green_name = f"{NAME}-{cluster.hash_of('v1')}"
    assert cluster.status.phase == "Available"
    cluster.raw = {**cluster.raw, "strategy": {"type": "Rolling"}}
    plan = cluster.reconcile()
    # The old pods serve until the Rolling Deployment is ready.
    assert cluster.deployments[blue_green_name].replicas == 2
    assert EnsureService(NAME, None) in plan.actions
    cluster.settle(steps=2)
    assert cluster.status.phase == "Available"
    assert cluster.deployments[NAME].ready == 2
    assert cluster.deployments[blue_green_name].replicas == 0


@pytest.mark.parametrize("kind", list(FailureKind))
def test_each_failure_signal_names_its_own_reason_and_message(
    new_cluster: ClusterFactory, kind: FailureKind
) -> None:
    cluster = deployed(new_cluster)
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    signal = FailureSignal(cluster.hash_of("v2"), kind, f"runtime says: {kind.value} detail")
    observed = dataclasses.replace(cluster.observe(), failures=(signal,))
    plan = planner.plan(NAME, cluster.spec, cluster.status, observed)
    assert plan.status.phase == "RolledBack"
    assert conditions(plan.status)["Degraded"] == ("True", kind.value)
    assert f"runtime says: {kind.value} detail" in plan.status.message
    assert plan.status.history[-1].reason == kind.value
    warnings = [a for a in plan.actions if isinstance(a, EmitEvent) and a.type == "Warning"]
    assert [w.reason for w in warnings] == [kind.value]


def test_requeue_follows_what_the_planner_waits_for(new_cluster: ClusterFactory) -> None:
    cluster = new_cluster(progressDeadlineSeconds=120)
    plan = cluster.reconcile()
    # The status changed: look again soon, for timers derived from the status written.
    assert plan.requeue_after == planner.AFTER_STATUS_CHANGE_SECONDS
    plan = cluster.reconcile()
    assert plan.requeue_after == draft.POLL_SECONDS  # pods may become ready any moment
    cluster.settle(steps=3)
    # Available and nothing left to write: only events (or the resync) wake it.
    assert cluster.plans[-1].requeue_after is None
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    cluster.advance(115)
    plan = cluster.reconcile()
    assert plan.requeue_after is not None and plan.requeue_after <= 6.0  # the deadline is near
