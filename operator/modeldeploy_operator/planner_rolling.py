"""Rolling: one Deployment whose template moves to the new version, or back to the LKG.

The Deployment controller does the surge; readiness gating keeps loading pods out of the
Service, and a pod is ready only after the runtime validated the known input, so "every
new pod ready" is the proof that the version works.
"""

from __future__ import annotations

from modeldeploy_operator import naming, planning
from modeldeploy_operator.actions import EnsureDeployment, EnsureService, Role
from modeldeploy_operator.observations import DeploymentView
from modeldeploy_operator.status import Phase, Reason


def rolling_view(d: planning.Draft) -> DeploymentView | None:
    """The single Deployment of a Rolling ModelDeployment, whatever template it runs."""
    return next((v for v in d.observed.deployments if v.name == d.name), None)


def _ensure_rolling(d: planning.Draft, template_hash: str, version: str, role: Role) -> None:
    d.actions.append(EnsureDeployment(d.name, template_hash, version, d.replicas, role))
    d.keep.add(template_hash)


def plan_rolling(d: planning.Draft) -> None:
    d.actions.append(EnsureService(naming.stable_service_name(d.name), None))
    view = rolling_view(d)
    if d.desired == d.lkg:
        _ensure_rolling(d, d.desired, d.version, "stable")
        serving = view if view and view.template_hash == d.desired else None
        planning.steady(d, serving)
        return
    if planning.blocked(d):
        if d.lkg and d.lkg_version:
            _ensure_rolling(d, d.lkg, d.lkg_version, "stable")
        planning.blocked_verdict(d, view if view and view.template_hash == d.lkg else None)
        return
    elapsed = planning.start_rollout(d)
    on_desired = view if view and view.template_hash == d.desired else None
    proven = d.replicas > 0 and on_desired is not None and _fully_rolled(d, on_desired)
    failure = planning.failure_of_desired(d, elapsed, proven)
    if failure is not None:
        planning.fail(d, *failure)
        if d.lkg and d.lkg_version:
            # The flip back: the Deployment's template returns to the LKG's.
            _ensure_rolling(d, d.lkg, d.lkg_version, "stable")
        planning.blocked_verdict(d, None)
        return
    _ensure_rolling(d, d.desired, d.version, "candidate")
    if d.replicas == 0:
        d.update(started_at=None)
        planning.decide(
            d,
            Phase.PENDING,
            Reason.SCALED_TO_ZERO,
            f"version {d.version} rolls out and is validated once replicas > 0",
            view,
        )
    elif proven:
        planning.complete(d)
        planning.decide(
            d,
            Phase.AVAILABLE,
            Reason.ROLLOUT_COMPLETE,
            f"version {d.version} rolled out: every pod passed the runtime's validation",
            on_desired,
        )
    else:
        ready = on_desired.ready_replicas if on_desired else 0
        d.requeue.append(planning.POLL_SECONDS)
        planning.decide(
            d,
            Phase.PROGRESSING,
            Reason.ROLLING_OUT,
            f"rolling out version {d.version}: {ready}/{d.replicas} new pods ready",
            view,
            (
                "Unknown",
                Reason.VALIDATING,
                f"pods of version {d.version} validate before they report ready",
            ),
        )


def _fully_rolled(d: planning.Draft, view: DeploymentView) -> bool:
    # Readiness gating is the validation in Rolling: a pod is ready only after the runtime
    # checked the known input, so every new pod ready means the version passed.
    return planning.settled_on(d, view)
