"""The replica count as the scale subresource (kubectl scale, an HPA) changes it."""

from __future__ import annotations

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.planning.actions import EnsureDeployment

from .conftest import NAME, ClusterFactory


@pytest.mark.parametrize("strategy", ["Rolling", "BlueGreen"])
def test_status_selector_selects_every_versions_pods(
    new_cluster: ClusterFactory, strategy: str
) -> None:
    cluster = new_cluster(strategy={"type": strategy})
    cluster.settle(steps=2)
    assert cluster.status.selector == f"{naming.LABEL_MODEL_DEPLOYMENT}={NAME}"
    assert cluster.status.to_dict()["selector"] == cluster.status.selector


@pytest.mark.parametrize("strategy", ["Rolling", "BlueGreen"])
def test_scaling_a_steady_deployment_starts_no_rollout(
    new_cluster: ClusterFactory, strategy: str
) -> None:
    cluster = new_cluster(strategy={"type": strategy})
    cluster.settle(steps=2)
    history = list(cluster.status.history)
    cluster.set_replicas(3)
    plan = cluster.reconcile()
    assert EnsureDeployment(
        naming.deployment_name(NAME, strategy, cluster.hash_of("v1")),  # type: ignore[arg-type]
        cluster.hash_of("v1"),
        3,
    ) in plan.actions
    cluster.settle(steps=2)
    assert cluster.status.phase == "Available"
    assert (cluster.status.replicas, cluster.status.ready) == (3, "3/3")
    assert cluster.status.history == history
    assert not [e for e in cluster.events if e.reason == "NewVersion"][1:]


def test_a_count_change_during_a_blue_green_rollout_resizes_both_and_keeps_the_rollout(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(
        strategy={"type": "BlueGreen", "blueGreen": {"autoPromote": False}}
    )
    cluster.settle(steps=2)
    v1 = cluster.hash_of("v1")
    cluster.set_version("v2")
    cluster.settle(steps=3)
    rollout = cluster.status.rollout
    assert rollout.candidate_hash == cluster.hash_of("v2")
    assert cluster.status.phase != "Available"
    # An HPA (or kubectl scale) changes the count mid-rollout.
    cluster.set_replicas(4)
    cluster.reconcile()
    after = cluster.status.rollout
    assert (after.candidate_hash, after.started_at) == (rollout.candidate_hash, rollout.started_at)
    assert after.last_known_good_hash == v1 == after.stable_hash
    assert cluster.status.last_known_good_version == "v1"
    # The candidate is sized to the current count, and the last-known-good keeps it too.
    assert cluster.deployment_of("v2").replicas == 4  # type: ignore[union-attr]
    assert cluster.deployment_of("v1").replicas == 4  # type: ignore[union-attr]
    assert [h.outcome for h in cluster.status.history] == ["Promoted", "Progressing"]
    cluster.promote = "v2"
    cluster.settle(steps=4)
    assert cluster.status.phase == "Available"
    assert cluster.status.current_version == "v2"
    assert cluster.status.ready == "4/4"
    assert cluster.deployment_of("v2").replicas == 4  # type: ignore[union-attr]
