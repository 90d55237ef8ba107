"""Pods the scheduler cannot place: said at once in Progressing, failed at the deadline."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.planning import observe

from .conftest import SCHEDULER_MESSAGE, Cluster, ClusterFactory


def progressing(cluster: Cluster) -> tuple[str, str, str]:
    condition = next(c for c in cluster.status.conditions if c.type == "Progressing")
    return condition.status, condition.reason, condition.message


def pod(hash_: str, scheduled: dict[str, Any] | None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{hash_}", "labels": {naming.LABEL_TEMPLATE_HASH: hash_}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conditions = [scheduled] if scheduled else []
    return {"metadata": meta, "status": {"phase": "Pending", "conditions": conditions}}


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": SCHEDULER_MESSAGE,
}


def test_the_schedulers_reason_is_read_from_the_pod_condition() -> None:
    pods = [
        pod("new", UNSCHEDULABLE),
        pod("new", UNSCHEDULABLE),
        pod("new", UNSCHEDULABLE, deleting=True),
        pod("old", {"type": "PodScheduled", "status": "True"}),
        pod("old", None),
        # Waiting on a scheduling gate is not the scheduler's refusal.
        pod("gated", {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}),
    ]
    (stuck,) = observe.unschedulable(pods)
    assert (stuck.template_hash, stuck.pods, stuck.message) == ("new", 2, SCHEDULER_MESSAGE)


@pytest.mark.parametrize("strategy", ["Rolling", "BlueGreen"])
def test_an_unschedulable_new_version_says_why_at_once_then_flips_back_at_the_deadline(
    new_cluster: ClusterFactory, strategy: str
) -> None:
    cluster = new_cluster(strategy={"type": strategy}, progressDeadlineSeconds=60)
    cluster.settle(steps=2)
    assert cluster.status.phase == "Available"
    cluster.set_version("v2", "unschedulable")
    cluster.reconcile()  # the new pods are created
    cluster.advance(1)
    cluster.reconcile()
    status, reason, message = progressing(cluster)
    assert (cluster.status.phase, status, reason) == ("Progressing", "True", "Unschedulable")
    assert SCHEDULER_MESSAGE in message and "version v2" in message
    assert SCHEDULER_MESSAGE in cluster.status.message
    # Still serving v1 meanwhile, and nothing gave up before the deadline.
    assert cluster.status.current_version == "v1"
    cluster.advance(30)
    cluster.reconcile()
    assert progressing(cluster)[1] == "Unschedulable"
    cluster.advance(40)
    cluster.reconcile()
    cluster.settle(steps=2)
    assert cluster.status.phase == "RolledBack"
    assert cluster.status.rollout.stable_hash == cluster.hash_of("v1")
    assert cluster.status.history[-1].reason == "ProgressDeadlineExceeded"


def test_a_schedulable_rollout_keeps_its_usual_reason(new_cluster: ClusterFactory) -> None:
    cluster = new_cluster()
    cluster.settle(steps=2)
    cluster.set_version("v2", "stuck")
    cluster.reconcile()
    assert progressing(cluster)[1] == "RollingOut"
