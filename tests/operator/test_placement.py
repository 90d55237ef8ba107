"""The nodes the serving pods' placement fields select (the prefetch step's targets)."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.api.pod import PodSpec
from modeldeploy_operator.planning import placement
from modeldeploy_operator.planning.observations import NodeView


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[tuple[str, str, str]] | None = None,
         cordoned: bool = False) -> NodeView:
    return NodeView(name, tuple(sorted((labels or {}).items())), tuple(taints or ()), cordoned)


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        found["values"] = list(values)
    return found


NODES = (
    node("a", {"pool": "gpu", "gpus": "8", "zone": "z1"}),
    node("b", {"pool": "gpu", "gpus": "2", "zone": "z2"}),
    node("c", {"pool": "cpu", "zone": "z1"}),
    node("d", {}),
)


def test_an_unconstrained_pod_selects_no_node_in_particular() -> None:
    assert not placement.selects(PodSpec())
    assert placement.selected_nodes(PodSpec(), NODES) == []
    # Tolerations only permit: they select nothing on their own.
    tolerant = PodSpec(tolerations=[{"operator": "Exists"}])
    assert placement.selected_nodes(tolerant, NODES) == []


def test_a_node_selector_needs_every_label_equal() -> None:
    assert placement.selected_nodes(PodSpec(node_selector={"pool": "gpu"}), NODES) == ["a", "b"]
    both = PodSpec(node_selector={"pool": "gpu", "zone": "z1"})
    assert placement.selected_nodes(both, NODES) == ["a"]


@pytest.mark.parametrize(
    ("expression", "chosen"),
    [
        (expr("pool", "In", "gpu", "cpu"), ["a", "b", "c"]),
        (expr("pool", "NotIn", "gpu"), ["c", "d"]),
        (expr("zone", "Exists"), ["a", "b", "c"]),
        (expr("zone", "DoesNotExist"), ["d"]),
        (expr("gpus", "Gt", "4"), ["a"]),
        (expr("gpus", "Lt", "4"), ["b"]),
        (expr("gpus", "Gt", "four"), []),
    ],
)
def test_required_node_affinity_operators(expression: dict[str, Any], chosen: list[str]) -> None:
    pod = PodSpec(affinity=required({"matchExpressions": [expression]}))
    assert placement.selected_nodes(pod, NODES) == chosen


def test_affinity_terms_are_ored_and_their_expressions_anded() -> None:
    pod = PodSpec(affinity=required(
        {"matchExpressions": [expr("pool", "In", "gpu"), expr("zone", "In", "z2")]},
        {"matchFields": [expr("metadata.name", "In", "d")]},
    ))
    assert placement.selected_nodes(pod, NODES) == ["b", "d"]


def test_an_empty_term_matches_no_node() -> None:
    assert placement.selected_nodes(PodSpec(affinity=required({})), NODES) == []


def test_a_preferred_affinity_alone_selects_nothing() -> None:
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [expr("pool", "In", "gpu")]}}]}}
    assert placement.selected_nodes(PodSpec(affinity=preferred), NODES) == []


def test_a_taint_the_pods_do_not_tolerate_keeps_its_node_out() -> None:
    nodes = (
        node("free", {"pool": "gpu"}),
        node("gpu-tainted", {"pool": "gpu"}, [("nvidia.com/gpu", "present", "NoSchedule")]),
        node("evicting", {"pool": "gpu"}, [("maintenance", "", "NoExecute")]),
        node("soft", {"pool": "gpu"}, [("busy", "", "PreferNoSchedule")]),
    )
    pod = PodSpec(node_selector={"pool": "gpu"})
    assert placement.selected_nodes(pod, nodes) == ["free", "soft"]
    equal = PodSpec(node_selector={"pool": "gpu"}, tolerations=[
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
         "effect": "NoSchedule"}])
    assert placement.selected_nodes(equal, nodes) == ["free", "gpu-tainted", "soft"]
    wrong_value = PodSpec(node_selector={"pool": "gpu"}, tolerations=[
        {"key": "nvidia.com/gpu", "value": "absent"}])
    assert placement.selected_nodes(wrong_value, nodes) == ["free", "soft"]
    wrong_effect = PodSpec(node_selector={"pool": "gpu"}, tolerations=[
        {"key": "maintenance", "operator": "Exists", "effect": "NoSchedule"}])
    assert placement.selected_nodes(wrong_effect, nodes) == ["free", "soft"]
    everything = PodSpec(node_selector={"pool": "gpu"}, tolerations=[{"operator": "Exists"}])
    assert placement.selected_nodes(everything, nodes) == [
        "evicting", "free", "gpu-tainted", "soft"]


def test_a_cordoned_node_is_left_out_unless_tolerated() -> None:
    nodes = (node("up", {"pool": "gpu"}), node("cordoned", {"pool": "gpu"}, cordoned=True))
    assert placement.selected_nodes(PodSpec(node_selector={"pool": "gpu"}), nodes) == ["up"]
    tolerant = PodSpec(node_selector={"pool": "gpu"}, tolerations=[
        {"key": placement.UNSCHEDULABLE_TAINT, "operator": "Exists"}])
    assert placement.selected_nodes(tolerant, nodes) == ["cordoned", "up"]


def test_a_node_object_is_read_as_labels_taints_and_cordon() -> None:
    from modeldeploy_operator.planning import observe

    view = observe.node_view({
        "metadata": {"name": "gpu-1", "labels": {"pool": "gpu"}},
        "spec": {"unschedulable": True,
                 "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
    })
    assert view == NodeView("gpu-1", (("pool", "gpu"),), (("nvidia.com/gpu", "", "NoSchedule"),),
                            True)
    assert not placement.fits(PodSpec(node_selector={"pool": "gpu"}), view)
