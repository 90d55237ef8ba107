"""One reconcile of one ModelDeployment: read, observe, plan, apply, write status.

Blocking (the Kubernetes client and httpx are synchronous); the handlers run it in a
thread. Level-based: it acts on the whole current state every time, so a restarted
operator resumes exactly where the recorded status and the children say. That state comes
from the watch-fed `ChildStore` (no API reads; the handlers' resync relists it), or, on a
`fresh` pass (after an error, or when the namespace's relist failed), from the API server
itself, which also refreshes the store.
The plan is the whole decision; this module only sequences its writes and feeds what
they learned (validation results) back into the next plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from modeldeploy_operator.adapters import apply
from modeldeploy_operator.adapters.kube import Kube, NotFoundError
from modeldeploy_operator.adapters.runtime_client import RuntimeClient
from modeldeploy_operator.adapters.store import ChildStore, WriteThrough
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.errors import OperatorError, PermanentError
from modeldeploy_operator.api.spec import InvalidSpecError, parse_spec
from modeldeploy_operator.api.status import ModelDeploymentStatus, Reason
from modeldeploy_operator.planning import builders, observe, planner, prefetch
from modeldeploy_operator.planning.actions import Plan
from modeldeploy_operator.planning.conditions import blocked_status, invalid_spec_status
from modeldeploy_operator.planning.observations import ValidationResult

log = logging.getLogger(__name__)

Manifest = dict[str, Any]


class Gone(OperatorError):
    """The ModelDeployment no longer exists (or is being deleted): stop reconciling it."""


@dataclass
class Context:
    """The operator-wide things a reconcile uses."""

    kube: Kube
    runtime: RuntimeClient
    default_image: str | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Watch-fed children; None reads everything from the API server on every pass.
    store: ChildStore | None = None


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for logs, metrics and the caller's requeue."""

    requeue_after: float | None
    phase: str
    status_written: bool
    actions: int
    # Operator-side validations that ran (their results went into the next plan).
    validated: bool = False
    # Objects created, changed or deleted (status aside): 0 when there was nothing to do.
    writes: int = 0

    @property
    def result(self) -> str:
        """For the reconcile counter: did this pass change anything?"""
        return "changed" if self.status_written or self.writes else "unchanged"


def _owner(md: Manifest) -> builders.Owner:
    meta = md["metadata"]
    return builders.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


CHILD_KINDS = ("Deployment", "Pod", "Service", "PodDisruptionBudget")


def fetch_world(
    kube: Kube, store: ChildStore | None, namespace: str, name: str, fresh: bool
) -> observe.World:
    """The child objects of one ModelDeployment: from the store, or listed when `fresh`."""
    selector = {naming.LABEL_MODEL_DEPLOYMENT: name}
    if store is None or fresh:
        listed = {
            "Deployment": kube.list("Deployment", namespace, selector),
            "Pod": kube.list("Pod", namespace, selector),
            "Service": kube.list("Service", namespace, selector),
            "PodDisruptionBudget": kube.list("PodDisruptionBudget", namespace, selector),
        }
        if store is not None:
            for kind, items in listed.items():
                store.seed(kind, namespace, selector, items)
    else:
        listed = {kind: store.list(kind, namespace, selector) for kind in CHILD_KINDS}
    services = {s["metadata"]["name"]: s for s in listed["Service"]}
    return observe.World(
        deployments=listed["Deployment"],
        pods=listed["Pod"],
        stable_service=services.get(naming.stable_service_name(name)),
        preview_service=services.get(naming.preview_service_name(name)),
        disruption_budget=next(iter(listed["PodDisruptionBudget"]), None),
    )


def _read_model_deployment(ctx: Context, namespace: str, name: str, fresh: bool) -> Manifest:
    stored = None if fresh or ctx.store is None else ctx.store.get(
        "ModelDeployment", namespace, name
    )
    if stored is not None:
        return stored
    try:
        md = ctx.kube.get_model_deployment(namespace, name)
    except NotFoundError:
        raise Gone(f"{namespace}/{name}") from None
    if ctx.store is not None:
        ctx.store.observe("ModelDeployment", md)
    return md


def _write_status(ctx: Context, md: Manifest, after: ModelDeploymentStatus) -> bool:
    # Diff against what is stored, not its parsed form: a value equal to the model's
    # default (phase Pending, say) must still be written the first time.
    old = dict(md.get("status") or {})
    patch = apply.status_patch(old, after.to_dict())
    if not patch:
        return False
    meta = md["metadata"]
    stored = ctx.kube.patch_status(meta["namespace"], meta["name"], patch)
    if ctx.store is not None and stored:
        # Write-through: the next pass must not plan from the status before this write.
        ctx.store.observe("ModelDeployment", stored)
    return True


def _runtime_status(ctx: Context) -> Callable[[Manifest], Any]:
    def ask(pod: Manifest) -> Any:
        endpoint = observe.serving_endpoint(pod)
        return ctx.runtime.status(*endpoint) if endpoint else None

    return ask


def reconcile(
    ctx: Context, namespace: str, name: str, memory: observe.Memory, fresh: bool = True
) -> Outcome:
    """Bring one ModelDeployment a step closer to its spec; raise `Gone` when it is gone.

    `fresh` reads from the API server (and refreshes the store) instead of the store.
    When a pass ran an operator-side validation, the next pass follows at once so the
    planner acts on the result (a promotion, a flip back) without waiting for a requeue.
    """
    outcome = _reconcile_once(ctx, namespace, name, memory, fresh)
    if outcome.validated:
        again = _reconcile_once(ctx, namespace, name, memory, fresh=False)
        outcome = replace(
            again,
            status_written=outcome.status_written or again.status_written,
            writes=outcome.writes + again.writes,
        )
    return outcome


# How soon to try again after the API server refused a write: what refused it (RBAC, an
# admission policy) changes without an event on our objects.
RETRY_REFUSED_SECONDS = 30.0


def _report_blocked(
    ctx: Context, md: Manifest, after: ModelDeploymentStatus, before: ModelDeploymentStatus,
    reason: Reason, stamp: str, requeue: float | None = None,
) -> Outcome:
    if after.message != before.message:
        meta = md.get("metadata", {})
        log.error("%s/%s: %s", meta.get("namespace"), meta.get("name"), after.message)
        ctx.kube.post_event(md, "Warning", reason.value, after.message, stamp)
    written = _write_status(ctx, md, after)
    return Outcome(requeue, after.phase.value, written, 0)


def _reconcile_once(
    ctx: Context, namespace: str, name: str, memory: observe.Memory, fresh: bool
) -> Outcome:
    md = _read_model_deployment(ctx, namespace, name, fresh)
    meta = md.get("metadata", {})
    if meta.get("deletionTimestamp"):
        raise Gone(f"{namespace}/{name}")
    now = ctx.clock()
    stamp = observe.rfc3339(now)
    generation = int(meta.get("generation") or 0)
    before = ModelDeploymentStatus.model_validate(md.get("status") or {})
    try:
        spec = parse_spec(md.get("spec") or {})
    except InvalidSpecError as exc:
        # Leave every child as it is: a bad edit must not take the running version down.
        after = invalid_spec_status(before, exc.errors, generation, stamp)
        return _report_blocked(ctx, md, after, before, Reason.INVALID_SPEC, stamp)

    owner = _owner(md)
    desired = builders.template_hash(spec, ctx.default_image)
    annotations = meta.get("annotations") or {}
    memory.start_epoch(generation, annotations.get(naming.ANNOTATION_RETRY))
    world = fetch_world(ctx.kube, ctx.store, namespace, name, fresh)
    if spec.cache.prefetch:
        # Not watched (a few short-lived pods per rollout): listed while prefetch is on.
        world = replace(world, prefetch_pods=ctx.kube.list(
            "Pod", namespace, {naming.LABEL_PREFETCH_FOR: name}))
    started = any(v is not None and v.template_hash == desired
                  for v in map(observe.deployment_view, world.deployments))
    if prefetch.needs_nodes(spec, started):
        # The placement fields select a node pool: its nodes get the new version too.
        world = replace(world, nodes=ctx.kube.list_nodes())
    observed = observe.build_observed(
        md, before, desired, world, memory, now, _runtime_status(ctx)
    )
    plan = planner.plan(name, spec, before, observed)
    target = apply.Target(
        md=md, owner=owner, spec=spec, desired_hash=desired, default_image=ctx.default_image
    )
    try:
        written, learned, writes = _carry_out(ctx, target, plan, before, world, stamp)
    except NotFoundError:
        raise  # a child vanished mid-plan: the next pass sees it gone
    except PermanentError as exc:
        # On top of the plan's status: a failure it recorded (written first) must stay.
        after = blocked_status(
            plan.status, Reason(exc.reason), str(exc), "cannot carry out the rollout", generation,
            stamp,
        )
        return _report_blocked(
            ctx, md, after, before, Reason(exc.reason), stamp, RETRY_REFUSED_SECONDS
        )
    memory.remember(learned)
    if written and plan.status.history != before.history:
        live = {v.template_hash for v in observed.deployments}
        apply.prune_config_maps(
            ctx.kube, owner, apply.referenced_hashes(plan.status, desired), live
        )
    if plan.status.phase.value != memory.last_phase:
        log.info(
            "%s/%s: %s (%s)", namespace, name, plan.status.phase.value, plan.status.message
        )
        memory.last_phase = plan.status.phase.value
    return Outcome(
        plan.requeue_after, plan.status.phase.value, written, len(plan.actions), bool(learned),
        writes,
    )


def _carry_out(
    ctx: Context,
    target: apply.Target,
    plan: Plan,
    before: ModelDeploymentStatus,
    world: observe.World,
    stamp: str,
) -> tuple[bool, tuple[ValidationResult, ...], int]:
    """The plan's writes in a crash-safe order: (status written, validations learned,
    objects written).

    Events go out before the status that records their cause, so whoever sees the status
    also finds the event, and a crash in between posts it again rather than never.
    Write-ahead: status is the only memory that a version failed. Recorded first, a crash
    between here and the flip's writes resumes the flip on restart; recorded last, the
    restarted operator would roll the failed version out again.
    """
    md = target.md
    status_first = plan.status.rollout.failed_hashes != before.rollout.failed_hashes
    kube = ctx.kube if ctx.store is None else WriteThrough(ctx.kube, ctx.store)
    if status_first:
        apply.post_events(kube, md, plan.actions, stamp)
        written = _write_status(ctx, md, plan.status)
        applied = apply.apply_actions(kube, ctx.runtime, target, plan.actions, world)
        return written, applied.validations, applied.writes
    applied = apply.apply_actions(kube, ctx.runtime, target, plan.actions, world)
    apply.post_events(kube, md, plan.actions, stamp)
    return _write_status(ctx, md, plan.status), applied.validations, applied.writes
