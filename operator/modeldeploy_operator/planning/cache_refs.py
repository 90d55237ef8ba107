"""The shared cache's reference rules, and the nodes' reports folded into status. Pure.

A version stays in a node's shared cache while this ModelDeployment's current (stable),
target (candidate), last-known-good, or, within the blue-green rollback window
(`scaleDownDelaySeconds` after a promotion), previous version uses it. Everything else may
be removed by the node's cache collector, which also keeps any version a pod has open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from modeldeploy_contract.cache import (
    INVENTORY_ANNOTATION_PREFIX,
    CacheReference,
    NodeInventory,
    Role,
)
from pydantic import ValidationError

from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import CachedVersion, CacheStatus, ModelDeploymentStatus


def previous_in_window(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, since_promotion: float | None,
) -> str | None:
    """The version traffic left at the last promotion, while it can still be flipped back to."""
    rollout = status.rollout
    if spec.strategy.type != "BlueGreen" or not rollout.previous_stable_hash:
        return None
    if rollout.promoted_at is None or since_promotion is None:
        return None
    if since_promotion >= spec.strategy.blue_green_settings.scale_down_delay_seconds:
        return None
    return next((r.version for r in reversed(status.history)
                 if r.template_hash == rollout.previous_stable_hash), None)


def references(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, since_promotion: float | None,
) -> list[CacheReference]:
    """The versions of `spec.model.name` the shared cache must keep, with their roles.

    `status` is the one being written (so a rollout that starts now already protects its
    target); `since_promotion` is seconds since status.rollout.promotedAt as observed.
    """
    roles: dict[str, list[Role]] = {}

    def keep(version: str | None, role: Role) -> None:
        if version:
            roles.setdefault(version, []).append(role)

    keep(status.current_version, "current")
    keep(status.target_version, "target")
    keep(status.last_known_good_version, "lastKnownGood")
    keep(previous_in_window(spec, status, since_promotion), "previous")
    return [CacheReference(name=spec.model.name, version=v, roles=r)
            for v, r in sorted(roles.items())]


def inventories(annotations: Mapping[str, str]) -> tuple[NodeInventory, ...]:
    """The nodes' reports (the collectors' annotations); unreadable ones are skipped."""
    found = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(INVENTORY_ANNOTATION_PREFIX):
            continue
        try:
            found.append(NodeInventory.model_validate(json.loads(value)))
        except (ValueError, ValidationError):
            continue
    return tuple(found)


def human(size: int) -> str:
    """Bytes for people, in SI units like `kubectl top`."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"  # pragma: no cover - the loop returns


def cached_versions(reports: tuple[NodeInventory, ...]) -> list[CachedVersion]:
    """Per version: how many nodes hold it, its size, and which nodes."""
    nodes: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for report in reports:
        for version, size in report.versions.items():
            nodes.setdefault(version, []).append(report.node)
            sizes[version] = max(size, sizes.get(version, 0))
    return [CachedVersion(version=v, nodes=len(nodes[v]), bytes=sizes[v], size=human(sizes[v]),
                          node_names=sorted(nodes[v]))
            for v in sorted(nodes)]


def cache_status(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, since_promotion: float | None,
    reports: tuple[NodeInventory, ...],
) -> CacheStatus | None:
    """status.cache: None for an emptyDir cache, which lives and dies with its pod."""
    if not spec.cache.shared:
        return None
    return CacheStatus(references=references(spec, status, since_promotion),
                       versions=cached_versions(reports))
