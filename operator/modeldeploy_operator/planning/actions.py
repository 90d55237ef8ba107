"""What the planner decides: actions for the handlers to carry out, and the new status.

Each action is idempotent when applied (create-or-update by server-side apply, scale to an
absolute count, delete if present), so applying a plan twice is harmless and a plan lost to
an operator crash is simply made again from the next observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modeldeploy_operator.api.status import ModelDeploymentStatus


@dataclass(frozen=True)
class EnsureDeployment:
    """Create or update the Deployment `name` to run `template_hash` with `replicas` pods.

    The planner chooses `name` (naming.deployment_name, or the name an existing Deployment
    of that template already has). For Rolling, `name` is the single Deployment and a
    different `template_hash` means a new pod template (the Deployment controller then
    surges). When `template_hash` is not the
    one the current spec renders (a flip back), the handler takes the template from the
    recorded last-known-good revision.
    """

    name: str
    template_hash: str
    replicas: int


@dataclass(frozen=True)
class ScaleDeployment:
    """Set the replica count of an existing Deployment."""

    name: str
    replicas: int


@dataclass(frozen=True)
class DeleteDeployment:
    """Delete a Deployment (and the runtime ConfigMap of its template hash)."""

    name: str
    template_hash: str


@dataclass(frozen=True)
class EnsureService:
    """Create or update a Service selecting pods of `template_hash` (None: all versions)."""

    name: str
    template_hash: str | None


@dataclass(frozen=True)
class DeleteService:
    """Delete a Service if present."""

    name: str


@dataclass(frozen=True)
class EnsureDisruptionBudget:
    """Create or update the PodDisruptionBudget `name` over every version's serving pods.

    Exactly one of `min_available` / `max_unavailable` is set (a count or a percentage).
    """

    name: str
    min_available: int | str | None = None
    max_unavailable: int | str | None = None


@dataclass(frozen=True)
class DeleteDisruptionBudget:
    """Delete the PodDisruptionBudget `name` if present."""

    name: str


@dataclass(frozen=True)
class RunValidation:
    """Send the validation input to `target` pods of `template_hash` and report the result."""

    template_hash: str
    target: Literal["preview", "stable"]


@dataclass(frozen=True)
class EnsurePrefetchPod:
    """Create the pod that fetches `template_hash` onto `node` (and its runtime config)."""

    template_hash: str
    node: str


@dataclass(frozen=True)
class DeletePrefetchPod:
    """Delete a prefetch pod if present."""

    name: str


@dataclass(frozen=True)
class EmitEvent:
    """Post a Kubernetes Event on the ModelDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = (
    EnsureDeployment
    | ScaleDeployment
    | DeleteDeployment
    | EnsureService
    | DeleteService
    | EnsureDisruptionBudget
    | DeleteDisruptionBudget
    | RunValidation
    | EnsurePrefetchPod
    | DeletePrefetchPod
    | EmitEvent
)


@dataclass(frozen=True)
class Plan:
    """The planner's answer: do these, write this status, look again after `requeue_after`."""

    actions: tuple[Action, ...]
    status: ModelDeploymentStatus
    requeue_after: float | None = None
