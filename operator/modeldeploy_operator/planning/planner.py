"""The rollout planner: spec + recorded rollout state + one observation -> actions + status.

Pure: no kopf, no Kubernetes client, no clock, no I/O. Time arrives as numbers in
`Observed` (`elapsed_seconds`, `since_promotion_seconds`, `since_abort_seconds`) and the
timestamp to stamp is `observed.now`. Level-based: every call looks at the whole picture,
so a lost plan is simply made again.

Vocabulary (see status.py): *desired* is the template hash the spec renders now; *stable*
the template the stable Service sends traffic to; *last-known-good* (LKG) the newest
template that passed validation and served traffic, the flip-back target; *candidate* the
template a rollout is bringing up. In blue-green, stable differs from LKG only during the
post-promotion window, while the previous version is still up to flip back to.

Rules that hold in every branch:
- Nothing reaches the stable Service before it is ready and validated.
- The LKG Deployment keeps the full replica count while anything newer is unproven.
- A failed template is not retried while the spec still renders it, unless the
  `modeldeploy.dev/retry` annotation changes.
"""

from __future__ import annotations

from typing import Literal

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import (
    ModelDeploymentStatus,
    Phase,
    RolloutState,
)
from modeldeploy_operator.planning import bluegreen, cache_refs, draft, prefetch, rolling
from modeldeploy_operator.planning.actions import (
    DeleteDeployment,
    DeleteDisruptionBudget,
    DeleteService,
    EmitEvent,
    EnsureDisruptionBudget,
    Plan,
    ScaleDeployment,
)
from modeldeploy_operator.planning.conditions import (
    TROUBLE_PHASES,
    build_conditions,
)
from modeldeploy_operator.planning.observations import DeploymentView, Observed

# How soon to look again after the status changed.
AFTER_STATUS_CHANGE_SECONDS = 1.0

def plan(
    name: str, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observed: Observed
) -> Plan:
    """Decide the next actions and the new status of ModelDeployment `name`."""
    d = draft.Draft(
        name=name,
        spec=spec,
        before=status,
        observed=observed,
        rollout=_upgraded(status.rollout),
        current_version=status.current_version,
        lkg_version=status.last_known_good_version,
        history=list(status.history),
    )
    draft.honour_retry(d)
    if d.blue_green:
        bluegreen.plan_blue_green(d)
    else:
        rolling.plan_rolling(d)
    _retire_old_deployments(d)
    prefetch.retire(d, started=d.desired in {v.template_hash for v in observed.deployments})
    _disruption_budget(d)
    return _assemble(d)


def _disruption_budget(d: draft.Draft) -> None:
    """One PodDisruptionBudget over every version's pods: the spec's bounds, or by default
    at least one pod left when there is more than one (a lone pod's budget would block
    every node drain)."""
    name = naming.disruption_budget_name(d.name)
    wanted = d.spec.disruption
    if wanted is not None and wanted.max_unavailable is not None:
        d.actions.append(EnsureDisruptionBudget(name, max_unavailable=wanted.max_unavailable))
    elif wanted is not None and wanted.min_available is not None:
        d.actions.append(EnsureDisruptionBudget(name, min_available=wanted.min_available))
    elif d.replicas > 1:
        d.actions.append(EnsureDisruptionBudget(name, min_available=1))
    elif d.observed.disruption_budget:
        d.actions.append(DeleteDisruptionBudget(name))


def _upgraded(rollout: RolloutState) -> RolloutState:
    # Status written before the LKG hash was recorded on its own: stable was the LKG.
    if rollout.last_known_good_hash is None and rollout.stable_hash is not None:
        return rollout.model_copy(update={"last_known_good_hash": rollout.stable_hash})
    return rollout


# --- old Deployments ------------------------------------------------------------------------


def _retire_old_deployments(d: draft.Draft) -> None:
    """Scale down templates nobody needs once their grace period is over; prune the rest."""
    if not d.blue_green and d.observed.preview_selector is not None:
        d.actions.append(DeleteService(naming.preview_service_name(d.name)))
    settings = d.spec.strategy.blue_green_settings
    aborted = d.rollout.failed_hashes[-1] if d.rollout.failed_hashes else None
    idle: list[DeploymentView] = []
    for view in d.observed.deployments:
        if d.blue_green and view.template_hash in d.keep:
            continue
        if not d.blue_green and view.name == d.name:
            continue
        if not d.blue_green and not (d.verdict and d.verdict.phase is Phase.AVAILABLE):
            # Left by an earlier BlueGreen strategy: it serves until the Rolling one does.
            continue
        if view.replicas == 0:
            idle.append(view)
            continue
        grace = _grace_left(
            d,
            view,
            aborted,
            settings.abort_scale_down_delay_seconds,
            settings.scale_down_delay_seconds,
        )
        if grace > 0:
            d.requeue.append(grace + 1.0)
        else:
            d.actions.append(ScaleDeployment(view.name, 0))
    recency = {entry.template_hash: i for i, entry in enumerate(d.history)}
    idle.sort(key=lambda v: (recency.get(v.template_hash, -1), v.name), reverse=True)
    for view in idle[draft.REVISION_HISTORY_LIMIT :]:
        d.actions.append(DeleteDeployment(view.name, view.template_hash))


def _grace_left(
    d: draft.Draft,
    view: DeploymentView,
    aborted: str | None,
    abort_delay: int,
    scale_down_delay: int,
) -> float:
    if view.template_hash == aborted and d.rollout.aborted_at is not None:
        # A failed candidate stays up a while so its pods' logs can be read.
        fresh = d.rollout.aborted_at != d.before.rollout.aborted_at
        since = 0.0 if fresh else d.observed.since_abort_seconds or 0.0
        return abort_delay - since
    if view.template_hash == d.rollout.previous_stable_hash and d.rollout.promoted_at:
        # The version traffic just left: the rollback window.
        fresh = d.rollout.promoted_at != d.before.rollout.promoted_at
        since = 0.0 if fresh else d.observed.since_promotion_seconds or 0.0
        return scale_down_delay - since
    return 0.0


# --- the status -----------------------------------------------------------------------------


def _assemble(d: draft.Draft) -> Plan:
    verdict = d.verdict
    assert verdict is not None, "every branch decides a verdict"
    serving = d.observed.deployment(d.rollout.stable_hash)
    if not d.blue_green:
        serving = rolling.rolling_view(d)
    ready = serving.ready_replicas if serving and d.current_version else 0
    before = d.before
    if verdict.phase != before.phase and not d.events:
        kind: Literal["Normal", "Warning"] = (
            "Warning" if verdict.phase in TROUBLE_PHASES else "Normal"
        )
        d.events.append(EmitEvent(kind, str(verdict.reason), f"{verdict.phase}: {verdict.message}"))
    generation = d.observed.generation
    now = d.observed.now
    status = ModelDeploymentStatus(
        phase=verdict.phase,
        current_version=d.current_version,
        target_version=d.version,
        last_known_good_version=d.lkg_version,
        replicas=d.replicas,
        selector=naming.pod_selector(d.name),
        ready_replicas=ready,
        ready=f"{ready}/{d.replicas}",
        strategy=d.spec.strategy.type,
        message=verdict.message,
        conditions=build_conditions(list(before.conditions), verdict, generation, now),
        observed_generation=generation,
        load_seconds=d.observed.load_seconds or before.load_seconds,
        model_revision=d.observed.revision or (
            before.model_revision if before.target_version == d.version else None
        ),
        history=d.history[-draft.HISTORY_LIMIT :],
        rollout=d.rollout,
    )
    since_promotion = (0.0 if d.rollout.promoted_at != before.rollout.promoted_at
                       else d.observed.since_promotion_seconds)
    status = status.model_copy(update={"cache": cache_refs.cache_status(
        d.spec, status, since_promotion, d.observed.cache_reports)})
    previous = cache_refs.previous_in_window(d.spec, status, since_promotion)
    requeue = list(d.requeue)
    if previous is not None and since_promotion is not None:
        # The previous version stops being referenced when its window closes: say so then.
        requeue.append(d.spec.strategy.blue_green_settings.scale_down_delay_seconds
                       - since_promotion + 1.0)
    if status != before:
        # Timers derived from the status being written (a promotion's scale-down delay,
        # say) only show up in the next observation: look again soon.
        requeue.append(AFTER_STATUS_CHANGE_SECONDS)
    return Plan(
        actions=(*d.actions, *d.events),
        status=status,
        requeue_after=min(requeue) if requeue else None,
    )
