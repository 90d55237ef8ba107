"""Rolling: one Deployment whose template moves to the new version, or back to the LKG.

The Deployment controller does the surge; readiness gating keeps loading pods out of the
Service, and a pod is ready only after the runtime validated the known input, so "every
new pod ready" is the proof that the version works.
"""

from __future__ import annotations

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import Phase, Reason
from modeldeploy_operator.planning import draft, prefetch
from modeldeploy_operator.planning.actions import EnsureDeployment, EnsureService
from modeldeploy_operator.planning.observations import DeploymentView


def rolling_view(d: draft.Draft) -> DeploymentView | None:
    """The single Deployment of a Rolling ModelDeployment, whatever template it runs."""
    return next((v for v in d.observed.deployments if v.name == d.name), None)


def _ensure_rolling(d: draft.Draft, template_hash: str) -> None:
    d.actions.append(EnsureDeployment(d.name, template_hash, d.replicas))
    d.keep.add(template_hash)


def plan_rolling(d: draft.Draft) -> None:
    d.actions.append(EnsureService(naming.stable_service_name(d.name), None))
    view = rolling_view(d)
    if d.desired == d.lkg:
        _ensure_rolling(d, d.desired)
        serving = view if view and view.template_hash == d.desired else None
        draft.steady(d, serving)
        return
    if draft.blocked(d):
        if d.lkg and d.lkg_version:
            _ensure_rolling(d, d.lkg)
        draft.blocked_verdict(d, view if view and view.template_hash == d.lkg else None)
        return
    elapsed = draft.start_rollout(d)
    on_desired = view if view and view.template_hash == d.desired else None
    proven = d.replicas > 0 and on_desired is not None and _fully_rolled(d, on_desired)
    failure = draft.failure_of_desired(d, elapsed, proven)
    if failure is not None:
        draft.fail(d, *failure)
        if d.lkg and d.lkg_version:
            # The flip back: the Deployment's template returns to the LKG's.
            _ensure_rolling(d, d.lkg)
        draft.blocked_verdict(d, None)
        return
    serving_hash = view.template_hash if view else None
    if prefetch.holds(d, on_desired is not None, serving_hash, view):
        if d.lkg and d.lkg_version:
            _ensure_rolling(d, d.lkg)
        return
    _ensure_rolling(d, d.desired)
    if d.replicas == 0:
        draft.wait_for_replicas(d, "rolls out and is validated", view)
    elif proven:
        draft.complete(d)
        draft.decide(
            d,
            Phase.AVAILABLE,
            Reason.ROLLOUT_COMPLETE,
            f"version {d.version} rolled out: every pod passed the runtime's validation",
            on_desired,
        )
    else:
        ready = on_desired.ready_replicas if on_desired else 0
        d.requeue.append(draft.POLL_SECONDS)
        reason, message = draft.waiting(
            d,
            Reason.ROLLING_OUT,
            f"rolling out version {d.version}: {ready}/{d.replicas} new pods ready",
        )
        draft.decide(
            d,
            Phase.PROGRESSING,
            reason,
            message,
            view,
            (
                "Unknown",
                Reason.VALIDATING,
                f"pods of version {d.version} validate before they report ready",
            ),
        )


def _fully_rolled(d: draft.Draft, view: DeploymentView) -> bool:
    # Readiness gating is the validation in Rolling: a pod is ready only after the runtime
    # checked the known input, so every new pod ready means the version passed.
    return draft.settled_on(d, view)
