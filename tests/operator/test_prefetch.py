"""The prefetch step: a new version's files reach the nodes before any pod of it exists."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import InvalidSpecError, parse_spec
from modeldeploy_operator.planning import builders, prefetch
from modeldeploy_operator.planning.actions import EnsureDeployment, EnsurePrefetchPod, Plan
from modeldeploy_operator.planning.observations import NodeView

from .conftest import NAME, NODE, Cluster, ClusterFactory, raw_spec

SHARED = {"volume": "hostPath", "hostPath": "/var/lib/models", "prefetch": True}


def progressing_reason(cluster: Cluster) -> str:
    return next(c.reason for c in cluster.status.conditions if c.type == "Progressing")


def deployed(new_cluster: ClusterFactory, **overrides: Any) -> Cluster:
    cluster = new_cluster(**{"cache": SHARED, **overrides})
    cluster.settle(steps=4)
    assert cluster.status.phase == "Available", cluster.status.message
    return cluster


def test_a_first_deploy_has_no_node_to_prefetch_to_and_starts_pods_at_once(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=SHARED)
    plan = cluster.reconcile()
    assert not [a for a in plan.actions if isinstance(a, EnsurePrefetchPod)]
    assert cluster.deployments


def test_a_new_version_is_prefetched_onto_the_current_pods_node_before_its_pods_start(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    h1, h2 = cluster.hash_of("v1"), cluster.hash_of("v2")
    cluster.set_version("v2")
    plan = cluster.reconcile()
    assert EnsurePrefetchPod(h2, NODE) in plan.actions
    assert not [a for a in plan.actions
                if isinstance(a, EnsureDeployment) and a.template_hash == h2]
    assert cluster.deployments[NAME].template_hash == h1, "the old version keeps serving"
    assert plan.status.phase == "Progressing"
    assert progressing_reason(cluster) == "Prefetching"
    assert "prefetching version v2 onto 1 node(s)" in plan.status.message
    assert "0/1 done" in plan.status.message

    cluster.advance(1)  # the prefetch pod succeeds
    plan = cluster.reconcile()
    assert EnsureDeployment(NAME, h2, 2) in plan.actions
    order = [entry for entry in cluster.prefetch_log if entry[1] == h2]
    assert order == [("prefetch", h2), ("pods", h2)]

    cluster.settle()
    assert cluster.status.phase == "Available" and cluster.status.current_version == "v2"
    assert cluster.prefetch_pods == {}, "finished prefetch pods are removed"


def test_a_failed_prefetch_fails_the_version_before_any_pod_of_it_exists(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster)
    h2 = cluster.hash_of("v2")
    cluster.set_version("v2", behaviour="prefetch_bad")
    cluster.settle()
    assert ("pods", h2) not in cluster.prefetch_log
    assert cluster.status.current_version == "v1"
    last = cluster.status.history[-1]
    assert (last.version, last.outcome, last.reason) == ("v2", "RolledBack", "FetchFailed")
    assert "NoSuchKey" in last.message
    assert cluster.deployments[NAME].template_hash == cluster.hash_of("v1")


def test_blue_green_prefetches_before_it_creates_the_candidate_deployment(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, strategy={"type": "BlueGreen"})
    h2 = cluster.hash_of("v2")
    cluster.set_version("v2")
    plan = cluster.reconcile()
    assert EnsurePrefetchPod(h2, NODE) in plan.actions
    assert not any(d.template_hash == h2 for d in cluster.deployments.values())
    cluster.settle()
    assert cluster.status.current_version == "v2"
    order = [entry for entry in cluster.prefetch_log if entry[1] == h2]
    assert order[0] == ("prefetch", h2) and ("pods", h2) in order


def test_without_prefetch_a_new_version_starts_its_pods_at_once(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, cache={**SHARED, "prefetch": False})
    cluster.set_version("v2")
    plan = cluster.reconcile()
    assert EnsureDeployment(NAME, cluster.hash_of("v2"), 2) in plan.actions
    assert cluster.prefetch_log == [("pods", cluster.hash_of("v1")),
                                    ("pods", cluster.hash_of("v2"))]


def test_prefetch_on_an_empty_dir_cache_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidSpecError, match="prefetch"):
        parse_spec(raw_spec(cache={"prefetch": True}))


def test_turning_prefetch_on_rerolls_no_pod() -> None:
    on = parse_spec(raw_spec(cache=SHARED))
    off = parse_spec(raw_spec(cache={**SHARED, "prefetch": False}))
    assert builders.template_hash(on) == builders.template_hash(off)


def test_the_prefetch_pod_is_the_fetch_container_alone_pinned_to_its_node() -> None:
    spec = parse_spec(raw_spec(cache=SHARED))
    owner = builders.Owner(NAME, "ns", "uid-1")
    pod = prefetch.prefetch_pod(owner, spec, "abc123", "node-7", "img:1")
    serving = builders.pod_template(owner, spec, "abc123", "img:1")
    # The fetch runs as the pod's container, after what prepares the shared cache.
    *prepare, fetch = serving["spec"]["initContainers"]
    assert pod["spec"]["containers"] == [fetch]
    assert pod["spec"].get("initContainers", []) == prepare
    assert pod["spec"]["restartPolicy"] == "Never"
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}]
    labels = pod["metadata"]["labels"]
    # Nothing that selects serving pods (Services, Deployment, PDB, scale) selects it.
    assert naming.LABEL_MODEL_DEPLOYMENT not in labels
    assert labels[naming.LABEL_PREFETCH_FOR] == NAME
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["spec"]["volumes"] == serving["spec"]["volumes"]


# -- the nodes the placement fields select ------------------------------------------------

GPU = {"nodeSelector": {"pool": "gpu"}}


def pool(*names: str, label: str = "gpu") -> tuple[NodeView, ...]:
    return tuple(NodeView(n, labels=(("pool", label),)) for n in names)


def prefetched_onto(plan: Plan) -> list[str]:
    return sorted(a.node for a in plan.actions if isinstance(a, EnsurePrefetchPod))


def test_a_first_deploy_onto_a_selected_node_pool_prefetches_there_before_any_pod(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=SHARED, pod=GPU)
    cluster.nodes = pool("gpu-1", "gpu-2") + pool("cpu-1", label="cpu")
    h1 = cluster.hash_of("v1")
    plan = cluster.reconcile()
    assert prefetched_onto(plan) == ["gpu-1", "gpu-2"]
    assert not cluster.deployments, "no pod of v1 before its files are on the pool"
    assert "prefetching version v1 onto 2 node(s)" in plan.status.message
    assert progressing_reason(cluster) == "Prefetching"

    cluster.advance(1)  # both prefetch pods succeed
    cluster.settle()
    assert cluster.status.phase == "Available" and cluster.status.current_version == "v1"
    assert [e for e in cluster.prefetch_log if e[1] == h1][:3] == [
        ("prefetch", h1), ("prefetch", h1), ("pods", h1)]


def test_a_new_version_goes_to_the_pods_nodes_and_the_selected_pool(
    new_cluster: ClusterFactory,
) -> None:
    cluster = deployed(new_cluster, pod=GPU)  # its pods run on NODE, outside the pool
    cluster.nodes = pool("gpu-1")
    cluster.set_version("v2")
    assert prefetched_onto(cluster.reconcile()) == sorted([NODE, "gpu-1"])


def test_a_first_deploy_with_no_node_selected_and_no_matching_node_starts_at_once(
    new_cluster: ClusterFactory,
) -> None:
    cluster = new_cluster(cache=SHARED, pod=GPU)
    cluster.nodes = pool("cpu-1", label="cpu")
    plan = cluster.reconcile()
    assert prefetched_onto(plan) == []
    assert cluster.deployments


def test_nodes_are_listed_only_while_a_prefetch_onto_selected_nodes_may_be_due() -> None:
    assert prefetch.needs_nodes(parse_spec(raw_spec(cache=SHARED, pod=GPU)), started=False)
    assert not prefetch.needs_nodes(parse_spec(raw_spec(cache=SHARED, pod=GPU)), started=True)
    assert not prefetch.needs_nodes(parse_spec(raw_spec(cache=SHARED)), started=False)
    assert not prefetch.needs_nodes(parse_spec(raw_spec(
        cache={**SHARED, "prefetch": False}, pod=GPU)), started=False)
