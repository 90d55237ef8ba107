"""Carry out a Plan's actions against the cluster, idempotently.

Every action is safe to repeat: Deployments, Services and config maps are server-side
applied, scaling sets an absolute count, deletes ignore what is already gone. A plan cut
short by a crash is made again from the next observation. Nothing here decides a name, a
port or a verdict: those come in the actions; what an action learns (a validation
result) goes back to `reconcile` as a value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from modeldeploy_contract.config import Validation

from modeldeploy_operator.adapters.kube import KubeWrites
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.errors import PermanentError
from modeldeploy_operator.api.spec import InvalidSpecError, ModelDeploymentSpec, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus
from modeldeploy_operator.planning import builders, observe, prefetch, runtime_config
from modeldeploy_operator.planning.actions import (
    Action,
    DeleteDeployment,
    DeleteDisruptionBudget,
    DeletePrefetchPod,
    DeleteService,
    EmitEvent,
    EnsureDeployment,
    EnsureDisruptionBudget,
    EnsurePrefetchPod,
    EnsureService,
    RunValidation,
    ScaleDeployment,
)
from modeldeploy_operator.planning.observations import ValidationResult

log = logging.getLogger(__name__)

Manifest = dict[str, Any]


class Validator(Protocol):
    """Runs the spec's validation input against one pod."""

    def validate(
        self, ip: str, port: int, model: str, validation: Validation
    ) -> tuple[bool, str]: ...


class MissingTemplateError(PermanentError):
    """A flip back needs a template whose recorded spec is gone."""

    reason = "TemplateUnavailable"


@dataclass(frozen=True)
class Target:
    """The ModelDeployment a plan is for, and the spec its desired template renders."""

    md: Manifest
    owner: builders.Owner
    spec: ModelDeploymentSpec
    desired_hash: str
    default_image: str | None = None


def spec_for_template(
    kube: KubeWrites, target: Target, template_hash: str
) -> ModelDeploymentSpec:
    """The spec that renders `template_hash`: today's spec, or the one recorded on its config map.

    A flip back rebuilds the last-known-good pods from that record, so they are exactly the
    ones that passed, whatever the spec says now.
    """
    if template_hash == target.desired_hash:
        return target.spec
    name = naming.config_map_name(target.owner.name, template_hash)
    config = kube.get("ConfigMap", target.owner.namespace, name)
    snapshot = ((config or {}).get("metadata", {}).get("annotations") or {}).get(
        naming.ANNOTATION_SPEC_SNAPSHOT
    )
    if not snapshot:
        raise MissingTemplateError(
            f"config map {target.owner.namespace}/{name}: missing or without the "
            f"{naming.ANNOTATION_SPEC_SNAPSHOT} annotation, so template {template_hash} cannot "
            "be rebuilt; change spec.model.version to roll out a known version"
        )
    try:
        return parse_spec(json.loads(snapshot))
    except (ValueError, InvalidSpecError) as exc:
        raise MissingTemplateError(
            f"config map {target.owner.namespace}/{name}: the recorded spec no longer parses "
            f"({exc}); change spec.model.version to roll out a known version"
        ) from None


def is_applied(desired: Any, live: Any) -> bool:
    """Does the live object already hold every field `desired` sets (as server-side apply
    would leave it)? The API server adds defaults and status; those do not count."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            is_applied(value, live.get(key)) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_applied(d, v) for d, v in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def _apply_if_changed(kube: KubeWrites, manifest: Manifest, live: Manifest | None) -> int:
    """Apply `manifest` unless `live` already matches it; the number of writes made."""
    if live is not None and is_applied(manifest, live):
        return 0
    kube.apply(manifest)
    return 1


def _ensure_deployment(
    kube: KubeWrites, target: Target, action: EnsureDeployment, live: Manifest | None
) -> int:
    spec = spec_for_template(kube, target, action.template_hash)
    # Render with today's strategy (surge settings), but the recorded template's pods.
    spec = spec.model_copy(update={"strategy": target.spec.strategy})
    owner = target.owner
    deployment = builders.deployment(
        owner, action.name, spec, action.template_hash, action.replicas, target.default_image
    )
    if live is not None and is_applied(deployment, live):
        # Its config map went out before it did, and is immutable: nothing to write.
        return 0
    kube.apply(builders.config_map(owner, spec, action.template_hash))
    kube.apply(deployment)
    return 2


@dataclass(frozen=True)
class Applied:
    """What carrying out a plan's actions did and learned."""

    validations: tuple[ValidationResult, ...] = ()
    # Objects written: 0 for a plan whose children already were as it wanted.
    writes: int = 0


def _run_validation(
    validator: Validator, pods: list[Manifest], target: Target, action: RunValidation
) -> ValidationResult | None:
    """Check every ready pod of the template; None when there is nothing to check yet."""
    spec = target.spec
    validation = runtime_config.build(spec).validation
    if validation is None:
        return None
    ready = observe.ready_pods(pods, action.template_hash)
    endpoints = [(pod, observe.serving_endpoint(pod)) for pod in ready]
    if not endpoints:
        return None
    failures = []
    for pod, endpoint in endpoints:
        if endpoint is None:
            failures.append(f"pod {pod['metadata'].get('name')}: no serving port to call")
            continue
        passed, message = validator.validate(*endpoint, spec.model.name, validation)
        if not passed:
            failures.append(f"pod {pod['metadata'].get('name')}: {message}")
    return ValidationResult(
        template_hash=action.template_hash,
        target=action.target,
        passed=not failures,
        message="; ".join(failures) if failures else f"{len(ready)} pods answered as expected",
    )


def post_events(kube: KubeWrites, md: Manifest, actions: Iterable[Action], now: str) -> None:
    """Post the plan's events (and nothing else)."""
    for action in unique_actions(actions):
        if isinstance(action, EmitEvent):
            kube.post_event(md, action.type, action.reason, action.message, now)


def apply_actions(
    kube: KubeWrites,
    validator: Validator,
    target: Target,
    actions: Iterable[Action],
    world: observe.World,
) -> Applied:
    """Carry out every action but the events, in order, writing only what differs from
    the children in `world`; return the validations that ran and the writes made."""
    owner = target.owner
    deployments = {d["metadata"]["name"]: d for d in world.deployments}
    services = {
        s["metadata"]["name"]: s for s in (world.stable_service, world.preview_service) if s
    }
    learned: list[ValidationResult] = []
    writes = 0
    for action in unique_actions(actions):
        if isinstance(action, EnsureDeployment):
            writes += _ensure_deployment(kube, target, action, deployments.get(action.name))
        elif isinstance(action, ScaleDeployment):
            live = deployments.get(action.name)
            if live is None or live.get("spec", {}).get("replicas") != action.replicas:
                kube.scale(owner.namespace, action.name, action.replicas)
                writes += 1
        elif isinstance(action, DeleteDeployment):
            kube.delete("Deployment", owner.namespace, action.name)
            config_name = naming.config_map_name(owner.name, action.template_hash)
            kube.delete("ConfigMap", owner.namespace, config_name)
            writes += 2
        elif isinstance(action, EnsureService):
            service = builders.service(owner, action.name, action.template_hash)
            writes += _apply_if_changed(kube, service, services.get(action.name))
        elif isinstance(action, DeleteService):
            kube.delete("Service", owner.namespace, action.name)
            writes += 1
        elif isinstance(action, EnsureDisruptionBudget):
            budget = builders.disruption_budget(
                owner, action.name, action.min_available, action.max_unavailable
            )
            writes += _apply_if_changed(kube, budget, world.disruption_budget)
        elif isinstance(action, DeleteDisruptionBudget):
            kube.delete("PodDisruptionBudget", owner.namespace, action.name)
            writes += 1
        elif isinstance(action, RunValidation):
            result = _run_validation(validator, world.pods, target, action)
            if result is not None:
                learned.append(result)
        elif isinstance(action, EnsurePrefetchPod):
            # Its runtime config first: the pod mounts it.
            kube.apply(builders.config_map(owner, target.spec, action.template_hash))
            kube.apply(prefetch.prefetch_pod(owner, target.spec, action.template_hash,
                                             action.node, target.default_image))
            writes += 2
        elif isinstance(action, DeletePrefetchPod):
            kube.delete("Pod", owner.namespace, action.name)
            writes += 1
        elif isinstance(action, EmitEvent):
            continue  # posted by post_events, before the status that records them
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")
    return Applied(tuple(learned), writes)


def referenced_hashes(status: ModelDeploymentStatus, desired_hash: str) -> set[str]:
    """Template hashes whose config maps must stay: anything status may still roll back to."""
    rollout = status.rollout
    keep = {desired_hash}
    for value in (
        rollout.stable_hash,
        rollout.candidate_hash,
        rollout.last_known_good_hash,
        rollout.previous_stable_hash,
    ):
        if value:
            keep.add(value)
    keep.update(rollout.failed_hashes)
    keep.update(entry.template_hash for entry in status.history if entry.template_hash)
    return keep


def prune_config_maps(
    kube: KubeWrites, owner: builders.Owner, keep: set[str], live: Iterable[str]
) -> list[str]:
    """Delete config maps of templates nothing refers to any more; return their names."""
    keep = keep | set(live)
    pruned = []
    for config in kube.list(
        "ConfigMap", owner.namespace, {naming.LABEL_MODEL_DEPLOYMENT: owner.name}
    ):
        labels = config.get("metadata", {}).get("labels") or {}
        template_hash = labels.get(naming.LABEL_TEMPLATE_HASH)
        if template_hash and template_hash not in keep:
            name = config["metadata"]["name"]
            kube.delete("ConfigMap", owner.namespace, name)
            pruned.append(name)
    return pruned


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new`: keys gone from `new` become null."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = status_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before:
            patch[key] = value
    return patch


def unique_actions(actions: Iterable[Action]) -> list[Action]:
    """Actions without exact repeats, first occurrence kept (a plan may ensure twice)."""
    seen: list[Action] = []
    for action in actions:
        if action not in seen:
            seen.append(action)
    return seen
