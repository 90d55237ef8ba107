"""An invalid edit: reported through conditions, never taking the running version down."""

from __future__ import annotations

from modeldeploy_operator.api.spec import InvalidSpecError, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning.conditions import invalid_spec_status

from .conftest import ClusterFactory, raw_spec

ERRORS = ["spec.replicas: must be >= 0, got -1"]


def conditions(status: ModelDeploymentStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_invalid_edit_of_a_running_deployment_is_degraded_and_keeps_serving(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster()
    cluster.settle(steps=2)
    running = cluster.status
    status = invalid_spec_status(running, ERRORS, generation=7, now="2026-01-01T01:00:00Z")
    assert status.phase == "Degraded"
    assert (status.current_version, status.last_known_good_version) == ("v1", "v1")
    assert status.ready == running.ready == "2/2"
    found = conditions(status)
    assert found["Degraded"] == ("True", "InvalidSpec", ERRORS[0])
    assert found["Progressing"][:2] == ("False", "InvalidSpec")
    assert found["Ready"][:2] == ("True", "AsExpected")
    assert "still serving v1" in status.message and ERRORS[0] in status.message
    assert status.observed_generation == 7
    assert all(c.observed_generation == 7 for c in status.conditions)
    assert status.rollout == running.rollout  # nothing about the rollout is forgotten


def test_invalid_first_spec_is_failed_with_the_reason(new_cluster: ClusterFactory) -> None:
    status = invalid_spec_status(ModelDeploymentStatus(), ERRORS, generation=1, now="t0")
    assert status.phase == "Failed"
    found = conditions(status)
    assert found["Ready"][:2] == ("False", "InvalidSpec")
    assert found["Degraded"] == ("True", "InvalidSpec", ERRORS[0])
    assert [c.type for c in status.conditions] == ["Ready", "Progressing", "Validated", "Degraded"]


def test_fixing_the_spec_returns_to_available(new_cluster: ClusterFactory) -> None:
    cluster = new_cluster()
    cluster.settle(steps=2)
    bad = raw_spec(replicas=-1)
    try:
        parse_spec(bad)
    except InvalidSpecError as exc:
        cluster.status = invalid_spec_status(cluster.status, exc.errors, 2, "t1")
    assert cluster.status.phase == "Degraded"
    cluster.generation = 3
    plan = cluster.reconcile()
    assert plan.status.phase == "Available"
    assert conditions(plan.status)["Degraded"][:2] == ("False", "AsExpected")


def test_transition_time_is_kept_when_a_condition_status_does_not_change(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster()
    cluster.settle(steps=2)
    ready_since = next(c for c in cluster.status.conditions if c.type == "Ready")
    status = invalid_spec_status(cluster.status, ERRORS, 2, "2027-01-01T00:00:00Z")
    ready = next(c for c in status.conditions if c.type == "Ready")
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert ready.last_transition_time == ready_since.last_transition_time
    assert degraded.last_transition_time == "2027-01-01T00:00:00Z"
