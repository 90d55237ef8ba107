"""spec.disruption: one PodDisruptionBudget over every version's serving pods."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_operator.adapters import apply
from modeldeploy_operator.api.spec import InvalidSpecError, parse_spec
from modeldeploy_operator.planning import builders, observe
from modeldeploy_operator.planning.actions import DeleteDisruptionBudget, EnsureDisruptionBudget

from tests.operator.fake_kube import FakeKube

from .conftest import NAME, ClusterFactory, raw_spec
from .test_crd import api_server_errors
from .test_pod_spec import schema  # noqa: F401  (fixture)

OWNER = builders.Owner(name=NAME, namespace="ns", uid="u-1")


@pytest.mark.parametrize(
    ("overrides", "budget"),
    [
        ({"replicas": 2}, EnsureDisruptionBudget(NAME, min_available=1)),
        ({"replicas": 5}, EnsureDisruptionBudget(NAME, min_available=1)),
        ({"replicas": 3, "disruption": {"maxUnavailable": "50%"}},
         EnsureDisruptionBudget(NAME, max_unavailable="50%")),
        ({"replicas": 3, "disruption": {"minAvailable": 2}},
         EnsureDisruptionBudget(NAME, min_available=2)),
        # Asked for explicitly, even for one pod: the user chose to block drains.
        ({"replicas": 1, "disruption": {"minAvailable": 1}},
         EnsureDisruptionBudget(NAME, min_available=1)),
        ({"replicas": 1}, None),
        ({"replicas": 1, "disruption": {}}, None),
        ({"replicas": 0}, None),
    ],
)
def test_the_planner_keeps_one_budget_or_none(
    new_cluster: ClusterFactory, overrides: dict[str, Any], budget: EnsureDisruptionBudget | None
) -> None:
    cluster = new_cluster(**overrides)
    cluster.settle(steps=2)
    assert cluster.disruption_budget == budget


@pytest.mark.parametrize("strategy", ["Rolling", "BlueGreen"])
def test_scaling_to_one_pod_removes_the_default_budget(
    new_cluster: ClusterFactory, strategy: str
) -> None:
    cluster = new_cluster(replicas=2, strategy={"type": strategy})
    cluster.settle(steps=2)
    assert cluster.disruption_budget is not None
    cluster.set_replicas(1)
    plan = cluster.reconcile()
    assert DeleteDisruptionBudget(NAME) in plan.actions
    assert cluster.disruption_budget is None
    # Gone means gone: no delete on every later pass.
    assert DeleteDisruptionBudget(NAME) not in cluster.reconcile().actions


def test_the_budget_covers_the_pods_of_every_version() -> None:
    old = parse_spec(raw_spec(strategy={"type": "BlueGreen"}))
    new = parse_spec(raw_spec(strategy={"type": "BlueGreen"},
                              model={**raw_spec()["model"], "version": "v2"}))
    budget = builders.disruption_budget(OWNER, NAME, 1, None)
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]
    selector = budget["spec"]["selector"]["matchLabels"]
    for spec in (old, new):
        hash_ = builders.template_hash(spec)
        labels = builders.deployment(OWNER, f"{NAME}-{hash_}", spec, hash_, 2)["spec"][
            "template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_apply_writes_and_deletes_the_budget() -> None:
    kube = FakeKube()
    spec = parse_spec(raw_spec())
    target = apply.Target(md={"metadata": {"name": NAME, "namespace": "ns"}}, owner=OWNER,
                          spec=spec, desired_hash=builders.template_hash(spec))
    nothing = observe.World(deployments=[], pods=[], stable_service=None, preview_service=None)
    apply.apply_actions(kube, None, target,  # type: ignore[arg-type]
                        [EnsureDisruptionBudget(NAME, max_unavailable=1)], nothing)
    written = kube.get("PodDisruptionBudget", "ns", NAME)
    assert written is not None and written["spec"]["maxUnavailable"] == 1
    apply.apply_actions(kube, None, target,  # type: ignore[arg-type]
                        [DeleteDisruptionBudget(NAME)], nothing)
    assert kube.get("PodDisruptionBudget", "ns", NAME) is None


def test_one_bound_only(schema: dict[str, Any]) -> None:  # noqa: F811
    both = raw_spec(disruption={"minAvailable": 1, "maxUnavailable": 1})
    assert any(e.startswith(".spec.disruption") for e in api_server_errors(both, schema))
    with pytest.raises(InvalidSpecError, match="both set"):
        parse_spec(both)
    # "50" is neither a count nor a percentage to Kubernetes.
    with pytest.raises(InvalidSpecError, match="maxUnavailable"):
        parse_spec(raw_spec(disruption={"maxUnavailable": "50"}))
