"""apply: a Plan's actions become the right API calls; flip back rebuilds recorded pods."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_operator.adapters import apply
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus, Revision, RolloutState
from modeldeploy_operator.planning import builders, observe
from modeldeploy_operator.planning.actions import (
    DeleteDeployment,
    DeleteService,
    EmitEvent,
    EnsureDeployment,
    EnsureService,
    RunValidation,
    ScaleDeployment,
)

from tests.operator.fake_kube import FakeKube

OWNER = builders.Owner(name="md", namespace="ns", uid="u-1")


def spec(version: str = "v1", **extra: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "m", "version": version, "source": {"s3": {"bucket": "models"}}},
        "runtime": {"task": "text-classification"},
        "validation": {"input": "good", "expected": {"label": "POSITIVE"}},
        **extra,
    }
    return parse_spec(raw)


class FakeValidator:
    def __init__(self, answers: dict[str, tuple[bool, str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def validate(self, ip: str, port: int, model: str, validation: Any) -> tuple[bool, str]:
        self.asked.append((ip, port))
        return self.answers[ip]


def target(s: ModelDeploymentSpec) -> apply.Target:
    return apply.Target(
        md={"metadata": {"name": "md", "namespace": "ns"}},
        owner=OWNER,
        spec=s,
        desired_hash=builders.template_hash(s),
    )


def ready_pod(template_hash: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{ip}", "labels": {naming.LABEL_TEMPLATE_HASH: template_hash}},
        "spec": {"containers": [{"name": "serve",
                                 "ports": [{"name": "http", "containerPort": 9000}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def world(kube: FakeKube, pods: Any = ()) -> observe.World:
    """The children as a reconcile would read them from the (fake) API server."""
    services = {k[1]: o for k, o in kube.objects.items() if k[0] == "Service"}
    return observe.World(
        deployments=[o for k, o in kube.objects.items() if k[0] == "Deployment"],
        pods=list(pods),
        stable_service=services.get("md"),
        preview_service=services.get("md-preview"),
    )


def run(kube: FakeKube, t: apply.Target, *actions: Any, pods: Any = (),
        validator: FakeValidator | None = None) -> Any:
    apply.post_events(kube, t.md, actions, "2026-01-01T00:00:00Z")
    applied = apply.apply_actions(
        kube, validator or FakeValidator({}), t, actions, world(kube, pods))
    return applied.validations


def test_ensure_deployment_applies_its_config_map_first_then_the_deployment() -> None:
    kube = FakeKube()
    t = target(spec())
    run(kube, t, EnsureDeployment("md", t.desired_hash, 3))
    config = naming.config_map_name("md", t.desired_hash)
    assert kube.calls == [("apply", "ConfigMap", config), ("apply", "Deployment", "md")]
    assert kube.objects[("Deployment", "md")]["spec"]["replicas"] == 3


def test_applying_the_same_plan_twice_writes_nothing_the_second_time() -> None:
    kube = FakeKube()
    t = target(spec())
    actions = (EnsureDeployment("md", t.desired_hash, 1), EnsureService("md", None),
               ScaleDeployment("md", 1))
    run(kube, t, *actions)
    first = json.dumps(list(kube.objects.values()), sort_keys=True)
    kube.calls.clear()
    again = apply.apply_actions(kube, FakeValidator({}), t, actions, world(kube))
    assert (kube.calls, again.writes) == ([], 0)
    assert json.dumps(list(kube.objects.values()), sort_keys=True) == first


def test_a_child_changed_behind_the_operators_back_is_applied_again() -> None:
    kube = FakeKube()
    t = target(spec())
    run(kube, t, EnsureDeployment("md", t.desired_hash, 1), EnsureService("md", None))
    kube.objects[("Service", "md")]["spec"]["selector"] = {"app": "someone-else"}
    kube.objects[("Deployment", "md")]["spec"]["template"]["spec"]["containers"][0][
        "image"] = "edited:by-hand"
    kube.calls.clear()
    applied = apply.apply_actions(
        kube, FakeValidator({}), t,
        (EnsureDeployment("md", t.desired_hash, 1), EnsureService("md", None)), world(kube))
    assert ("apply", "Deployment", "md") in kube.calls
    assert ("apply", "Service", "md") in kube.calls
    assert applied.writes == 3


def test_is_applied_ignores_what_the_api_server_adds_but_not_what_differs() -> None:
    desired = {"spec": {"replicas": 2, "ports": [{"port": 80, "targetPort": "http"}]}}
    live = {"spec": {"replicas": 2, "ports": [{"port": 80, "targetPort": "http",
                                                "protocol": "TCP"}], "clusterIP": "x"},
            "status": {"ready": 1}}
    assert apply.is_applied(desired, live)
    assert not apply.is_applied(desired, {"spec": {"replicas": 3, "ports": []}})
    assert not apply.is_applied({"a": [1, 2]}, {"a": [1]})
    assert not apply.is_applied({"a": {"b": 1}}, {"a": None})


def test_flip_back_rebuilds_the_last_known_good_pods_from_its_recorded_spec() -> None:
    kube = FakeKube()
    v1 = spec("v1")
    t1 = target(v1)
    run(kube, t1, EnsureDeployment("md", t1.desired_hash, 1))
    v2 = spec("v2", replicas=2)
    t2 = target(v2)
    run(kube, t2, EnsureDeployment("md", t2.desired_hash, 2))
    assert kube.objects[("Deployment", "md")]["metadata"]["labels"][naming.LABEL_VERSION] == "v2"
    # The planner flips back: the Deployment's template returns to v1's.
    run(kube, t2, EnsureDeployment("md", t1.desired_hash, 2))
    dep = kube.objects[("Deployment", "md")]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[naming.LABEL_VERSION] == "v1"
    assert labels[naming.LABEL_TEMPLATE_HASH] == t1.desired_hash
    assert dep["spec"]["replicas"] == 2
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": f"md-config-{t1.desired_hash}"}} in volumes


def test_flip_back_without_a_recorded_spec_names_the_config_map_and_the_fix() -> None:
    kube = FakeKube()
    t = target(spec())
    with pytest.raises(apply.MissingTemplateError, match=r"ns/md-config-abc.*spec.model.version"):
        run(kube, t, EnsureDeployment("md", "abc", 1))


def test_scale_delete_and_services_map_to_their_calls() -> None:
    kube = FakeKube()
    t = target(spec(strategy={"type": "BlueGreen"}))
    h = t.desired_hash
    run(kube, t, EnsureDeployment(f"md-{h}", h, 1),
        EnsureService("md-preview", h), ScaleDeployment(f"md-{h}", 0))
    assert kube.objects[("Deployment", f"md-{h}")]["spec"]["replicas"] == 0
    assert kube.objects[("Service", "md-preview")]["spec"]["selector"][
        naming.LABEL_TEMPLATE_HASH] == h
    run(kube, t, DeleteDeployment(f"md-{h}", h), DeleteService("md-preview"))
    assert kube.objects == {}


def test_events_are_posted_on_the_model_deployment() -> None:
    kube = FakeKube()
    run(kube, target(spec()), EmitEvent("Warning", "ValidationFailed", "v2 answered NEGATIVE"))
    assert kube.events == [("Warning", "ValidationFailed", "v2 answered NEGATIVE")]


def test_validation_checks_every_ready_pod_on_its_own_port_and_returns_the_result() -> None:
    kube = FakeKube()
    validator = FakeValidator({"127.0.0.2": (True, "ok"), "127.0.0.3": (False, "got NEGATIVE")})
    pods = [ready_pod("h2", "127.0.0.2"), ready_pod("h2", "127.0.0.3"), ready_pod("h1", "x")]
    (result,) = run(kube, target(spec()), RunValidation("h2", "preview"), pods=pods,
                    validator=validator)
    assert sorted(validator.asked) == [("127.0.0.2", 9000), ("127.0.0.3", 9000)]
    assert (result.template_hash, result.target) == ("h2", "preview")
    assert result.passed is False and "got NEGATIVE" in result.message


def test_validation_with_no_ready_pod_learns_nothing() -> None:
    assert run(FakeKube(), target(spec()), RunValidation("h2", "preview")) == ()


def test_status_patch_nulls_removed_keys_and_keeps_unchanged_ones_out() -> None:
    old = {"phase": "Progressing", "targetVersion": "v2", "rollout": {"candidateHash": "h2",
                                                                      "stableHash": "h1"}}
    new = {"phase": "Available", "rollout": {"stableHash": "h1"}}
    assert apply.status_patch(old, new) == {
        "phase": "Available",
        "targetVersion": None,
        "rollout": {"candidateHash": None},
    }
    assert apply.status_patch(new, new) == {}


def test_config_maps_of_templates_nothing_refers_to_are_pruned() -> None:
    kube = FakeKube()
    for h in ("h1", "h2", "h3", "h4"):
        kube.apply(builders.config_map(OWNER, spec(), h))
    status = ModelDeploymentStatus(
        rollout=RolloutState(stable_hash="h2", last_known_good_hash="h2"),
        history=[Revision(version="v1", template_hash="h1", outcome="Promoted")],
    )
    keep = apply.referenced_hashes(status, desired_hash="h3")
    pruned = apply.prune_config_maps(kube, OWNER, keep, live=[])
    assert pruned == ["md-config-h4"]
