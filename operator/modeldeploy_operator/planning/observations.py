"""What the operator observed of the cluster in one reconcile: the planner's input.

One snapshot per reconcile (as Argo Rollouts does): the handlers fill it from the API
server and the runtime, the planner reads it and never asks for more. Plain frozen
dataclasses, so tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from modeldeploy_contract.cache import NodeInventory

from modeldeploy_operator.api.status import LoadSeconds


@dataclass(frozen=True)
class DeploymentView:
    """One child Deployment, as its status reports it."""

    name: str
    template_hash: str
    version: str
    replicas: int
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    # False until the Deployment controller has seen the newest spec (status.observedGeneration
    # < metadata.generation): its counts then describe the previous template.
    settled: bool = True

    @property
    def fully_ready(self) -> bool:
        """All desired replicas of the current template are updated and ready."""
        return (
            self.settled
            and self.updated_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and self.unavailable_replicas == 0
        )


class FailureKind(StrEnum):
    """Why pods of a version cannot serve; each maps to a condition reason."""

    VALIDATION_FAILED = "ValidationFailed"
    LOAD_FAILED = "LoadFailed"
    FETCH_FAILED = "FetchFailed"
    CACHE_FULL = "CacheFull"
    CRASH_LOOP = "CrashLoop"
    OOM_KILLED = "OOMKilled"
    FETCH_DEADLINE_EXCEEDED = "FetchDeadlineExceeded"
    LOAD_DEADLINE_EXCEEDED = "LoadDeadlineExceeded"
    WARMUP_DEADLINE_EXCEEDED = "WarmupDeadlineExceeded"
    VALIDATION_DEADLINE_EXCEEDED = "ValidationDeadlineExceeded"


@dataclass(frozen=True)
class PrefetchPod:
    """A pod fetching `template_hash` onto `node`; phase as Kubernetes reports it."""

    name: str
    template_hash: str
    node: str
    phase: str


@dataclass(frozen=True)
class NodeView:
    """A Node as the placement rules read it: labels, (key, value, effect) taints, cordon."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[tuple[str, str, str], ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True)
class FailureSignal:
    """A pod of `template_hash` failed in a way that will not heal by waiting."""

    template_hash: str
    kind: FailureKind
    message: str


@dataclass(frozen=True)
class Unschedulable:
    """Pods of `template_hash` the scheduler could place on no node, with its reason.

    Not a failure: a node may join or a taint may go, so the rollout waits out its
    progress deadline; but the status says why at once instead of only then.
    """

    template_hash: str
    pods: int
    message: str


@dataclass(frozen=True)
class ValidationResult:
    """The operator's own check of the validation input against a set of pods."""

    template_hash: str
    target: Literal["preview", "stable"]
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """Everything the planner may know about the world, for one reconcile."""

    generation: int
    # Hash of the pod template the current spec renders to (builders.template_hash).
    desired_hash: str
    deployments: tuple[DeploymentView, ...] = ()
    # Template hash the preview Service selects; None when there is none. (The stable
    # Service's selector is decided from status.rollout, never read back.)
    preview_selector: str | None = None
    # Whether the PodDisruptionBudget named like the resource exists.
    disruption_budget: bool = False
    failures: tuple[FailureSignal, ...] = ()
    unschedulable: tuple[Unschedulable, ...] = ()
    validations: tuple[ValidationResult, ...] = ()
    load_seconds: LoadSeconds | None = None
    # The source revision (hub commit) the newest ready pod of the desired template serves.
    revision: str | None = None
    # Seconds since status.rollout.startedAt (0 when no rollout is recorded), and the
    # timestamp to stamp on anything that changes now: the clock is read by the caller.
    elapsed_seconds: float = 0.0
    now: str = ""
    # Seconds since status.rollout.promotedAt / abortedAt (None when unset).
    since_promotion_seconds: float | None = None
    since_abort_seconds: float | None = None
    # Values of the modeldeploy.dev/promote and modeldeploy.dev/retry annotations.
    promote_annotation: str | None = None
    retry_annotation: str | None = None
    # (template hash, node) of every scheduled, non-terminating serving pod.
    pod_nodes: tuple[tuple[str, str], ...] = ()
    # Pods fetching a version onto a node before its rollout starts (spec.cache.prefetch).
    prefetch_pods: tuple[PrefetchPod, ...] = ()
    # The cluster's Nodes, listed only while prefetch is on and spec.pod selects nodes.
    nodes: tuple[NodeView, ...] = ()
    # What the nodes' cache collectors report holding of this model (shared caches).
    cache_reports: tuple[NodeInventory, ...] = ()

    def deployment(self, template_hash: str | None) -> DeploymentView | None:
        """The child Deployment running `template_hash`, if any."""
        return next((d for d in self.deployments if d.template_hash == template_hash), None)

    def failure(self, template_hash: str | None) -> FailureSignal | None:
        """The first failure reported for pods of `template_hash`, if any."""
        return next((f for f in self.failures if f.template_hash == template_hash), None)

    def unschedulable_pods(self, template_hash: str | None) -> Unschedulable | None:
        """The scheduler's verdict on pods of `template_hash` it could not place, if any."""
        return next((u for u in self.unschedulable if u.template_hash == template_hash), None)

    def validation(self, template_hash: str | None, target: str) -> ValidationResult | None:
        """The operator-side validation result for `template_hash` through `target`."""
        return next(
            (
                v
                for v in self.validations
                if v.template_hash == template_hash and v.target == target
            ),
            None,
        )
