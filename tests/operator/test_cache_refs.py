"""The shared cache's reference rules: which versions the nodes must keep, through rollouts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_contract.cache import NodeInventory, inventory_annotation_key
from modeldeploy_operator.api.spec import InvalidSpecError, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning import builders, cache_refs, runtime_config

from .conftest import Cluster, ClusterFactory, raw_spec

HOST_PATH = {"volume": "hostPath", "hostPath": "/var/lib/models"}


def kept(status: ModelDeploymentStatus) -> dict[str, list[str]]:
    assert status.cache is not None, "a shared cache publishes its references"
    return {r.version: list(r.roles) for r in status.cache.references}


def blue_green(new_cluster: ClusterFactory, delay: int) -> Cluster:
    cluster = new_cluster(cache=HOST_PATH, strategy={
        "type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": delay}})
    cluster.settle(steps=3)
    assert cluster.status.phase == "Available", cluster.status.message
    return cluster


def test_a_settled_version_is_kept_as_current_and_last_known_good(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=HOST_PATH)
    cluster.settle()
    assert kept(cluster.status) == {"v1": ["current", "target", "lastKnownGood"]}


def test_during_a_rolling_rollout_both_the_serving_and_the_new_version_are_kept(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=HOST_PATH)
    cluster.settle()
    cluster.set_version("v2")
    plan = cluster.reconcile()
    assert plan.status.phase == "Progressing"
    assert kept(plan.status) == {"v1": ["current", "lastKnownGood"], "v2": ["target"]}


def test_after_a_rolling_rollout_only_the_new_version_is_kept(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=HOST_PATH)
    cluster.settle()
    cluster.set_version("v2")
    cluster.settle()
    assert kept(cluster.status) == {"v2": ["current", "target", "lastKnownGood"]}


def test_a_failed_rollout_keeps_the_last_known_good_it_flipped_back_to(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=HOST_PATH)
    cluster.settle()
    cluster.set_version("v2", behaviour="crash")
    cluster.settle()
    assert cluster.status.current_version == "v1"
    assert "lastKnownGood" in kept(cluster.status)["v1"]


def test_inside_the_rollback_window_the_previous_version_is_kept(
    new_cluster: ClusterFactory,
) -> None:
    cluster = blue_green(new_cluster, delay=60)
    cluster.set_version("v2")
    for _ in range(3):
        cluster.advance(5)
        cluster.reconcile()
    assert cluster.status.current_version == "v2"
    assert kept(cluster.status) == {
        "v1": ["previous"], "v2": ["current", "target", "lastKnownGood"]}


def test_after_the_rollback_window_the_previous_version_is_no_longer_kept(
    new_cluster: ClusterFactory,
) -> None:
    cluster = blue_green(new_cluster, delay=60)
    cluster.set_version("v2")
    for _ in range(3):
        cluster.advance(5)
        cluster.reconcile()
    assert "v1" in kept(cluster.status)
    cluster.advance(61)
    plan = cluster.reconcile()
    assert kept(plan.status) == {"v2": ["current", "target", "lastKnownGood"]}


def test_the_window_closing_brings_a_reconcile_to_drop_the_previous_version(
    new_cluster: ClusterFactory,
) -> None:
    cluster = blue_green(new_cluster, delay=600)
    cluster.set_version("v2")
    plans = []
    for _ in range(3):
        cluster.advance(5)
        plans.append(cluster.reconcile())
    # Without it nothing would look again until an unrelated event, and v1 would linger.
    assert plans[-1].requeue_after is not None and plans[-1].requeue_after <= 601


def test_an_empty_dir_cache_publishes_nothing(new_cluster: ClusterFactory) -> None:
    cluster = new_cluster()
    cluster.settle()
    assert cluster.status.cache is None


def test_the_nodes_reports_fold_into_versions_with_node_counts_and_sizes() -> None:
    reports = cache_refs.inventories({
        inventory_annotation_key("node-a"): json.dumps(
            NodeInventory(node="node-a", versions={"v1": 90_900_000, "v2": 91_000_000})
            .model_dump()),
        inventory_annotation_key("node-b"): json.dumps(
            NodeInventory(node="node-b", versions={"v2": 91_000_000}).model_dump()),
        inventory_annotation_key("node-c"): "not json",
        "unrelated/annotation": "{}",
    })
    versions = {v.version: (v.nodes, v.bytes, v.size, v.node_names)
                for v in cache_refs.cached_versions(reports)}
    assert versions == {"v1": (1, 90_900_000, "90.9MB", ["node-a"]),
                        "v2": (2, 91_000_000, "91.0MB", ["node-a", "node-b"])}


def test_the_planner_shows_what_the_nodes_hold_in_status() -> None:
    spec = parse_spec(raw_spec(cache=HOST_PATH))
    status = ModelDeploymentStatus(current_version="v1", last_known_good_version="v1",
                                   target_version="v1")
    report = NodeInventory(node="n1", versions={"v1": 5})
    shown = cache_refs.cache_status(spec, status, None, (report,))
    assert shown is not None
    assert [(v.version, v.nodes) for v in shown.versions] == [("v1", 1)]


def test_a_long_node_name_still_makes_a_valid_annotation_key() -> None:
    key = inventory_annotation_key("ip-10-0-0-1." + "x" * 80 + ".compute.internal")
    name = key.split("/", 1)[1]
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()


def _spec(**cache: Any) -> Any:
    return parse_spec(raw_spec(cache={**HOST_PATH, **cache})).cache


def test_size_limit_is_a_quantity_in_bytes() -> None:
    assert _spec(sizeLimit="1Gi").size_limit_bytes == 2**30
    assert _spec(sizeLimit="500M").size_limit_bytes == 500_000_000
    assert _spec().size_limit_bytes is None


def test_a_zero_size_limit_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidSpecError, match="sizeLimit"):
        parse_spec(raw_spec(cache={**HOST_PATH, "sizeLimit": "0"}))


def test_size_limit_reaches_the_runtime_config_and_the_template_hash() -> None:
    limited = parse_spec(raw_spec(cache={**HOST_PATH, "sizeLimit": "2Gi"}))
    plain = parse_spec(raw_spec(cache=HOST_PATH))
    document = json.loads(runtime_config.to_json(runtime_config.build(limited)))
    assert document["cache"]["sizeLimitBytes"] == 2 * 2**30
    assert "sizeLimitBytes" not in json.loads(
        runtime_config.to_json(runtime_config.build(plain)))["cache"]
    assert builders.template_hash(limited) != builders.template_hash(plain)
