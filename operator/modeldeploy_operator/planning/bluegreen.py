"""BlueGreen: one Deployment per template; the stable Service selector flips in one step.

The candidate comes up in full behind the preview Service, is validated there, and only
then takes traffic. After the switch the previous version stays up for the rollback window
(and, with postPromotionValidationSeconds, is the flip-back target while the new version
is checked through the stable Service). A failed candidate never receives traffic.
"""

from __future__ import annotations

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import Phase, Reason
from modeldeploy_operator.planning import draft, prefetch
from modeldeploy_operator.planning.actions import (
    DeleteService,
    EmitEvent,
    EnsureDeployment,
    EnsureService,
    RunValidation,
)
from modeldeploy_operator.planning.conditions import ConditionStatus
from modeldeploy_operator.planning.observations import DeploymentView


def _bg_name(d: draft.Draft, template_hash: str) -> str:
    view = d.observed.deployment(template_hash)
    # A Deployment left by an earlier Rolling strategy keeps its name.
    return view.name if view else naming.deployment_name(d.name, "BlueGreen", template_hash)


def _ensure_bg(d: draft.Draft, template_hash: str) -> None:
    d.actions.append(EnsureDeployment(_bg_name(d, template_hash), template_hash, d.replicas))
    d.keep.add(template_hash)


def plan_blue_green(d: draft.Draft) -> None:
    if d.stable and d.lkg and d.stable != d.lkg:
        if d.desired == d.stable:
            _post_promotion(d)
            _bg_services(d)
            return
        _leave_window(d)
    if d.stable and d.current_version:
        _ensure_bg(d, d.stable)
    serving = d.observed.deployment(d.stable)
    if d.desired == d.lkg:
        draft.steady(d, serving)
    elif draft.blocked(d):
        draft.blocked_verdict(d, serving)
    else:
        _bg_rollout(d, serving)
    _bg_services(d)


def _leave_window(d: draft.Draft) -> None:
    """The spec moved during the post-promotion window: settle the promoted version first."""
    assert d.stable is not None and d.lkg is not None
    promoted = draft.version_of(d, d.stable)
    if d.desired == d.lkg:
        # Reverting to the LKG: traffic goes back to it now; it is still up.
        message = f"version {promoted} replaced by {d.lkg_version} during its validation window"
        draft.record(d, d.stable, promoted, "Superseded", Reason.REVERTED, message)
        d.update(stable_hash=d.lkg, previous_stable_hash=d.stable)
        d.current_version = d.lkg_version
    else:
        # It passed the preview validation and has been serving: it becomes the LKG.
        message = f"version {promoted} is serving and last-known-good"
        draft.record(d, d.stable, promoted, "Promoted", Reason.PROMOTED, message)
        d.update(last_known_good_hash=d.stable, previous_stable_hash=d.lkg)
        d.lkg_version = promoted


def _bg_rollout(d: draft.Draft, serving: DeploymentView | None) -> None:
    elapsed = draft.start_rollout(d)
    view = d.observed.deployment(d.desired)
    ready = d.replicas > 0 and draft.settled_on(d, view)
    preview = d.observed.validation(d.desired, "preview")
    passed = ready and (d.spec.validation is None or (preview is not None and preview.passed))
    failure = draft.failure_of_desired(d, elapsed, passed)
    if failure is not None:
        draft.fail(d, *failure)
        draft.blocked_verdict(d, serving)
        return
    if prefetch.holds(d, view is not None, d.stable, serving):
        return
    _ensure_bg(d, d.desired)
    if d.replicas == 0:
        draft.wait_for_replicas(d, "is validated and promoted", serving)
        return
    if not ready:
        count = view.ready_replicas if view else 0
        d.requeue.append(draft.POLL_SECONDS)
        reason, message = draft.waiting(
            d, Reason.WAITING_FOR_READY, f"candidate {d.version}: {count}/{d.replicas} pods ready"
        )
        draft.decide(
            d,
            Phase.PROGRESSING,
            reason,
            message,
            serving,
            ("Unknown", Reason.WAITING_FOR_READY, f"version {d.version} not ready yet"),
        )
        return
    if not passed:
        d.actions.append(RunValidation(d.desired, "preview"))
        d.requeue.append(draft.POLL_SECONDS)
        draft.decide(
            d,
            Phase.VALIDATING,
            Reason.VALIDATING,
            f"validating candidate {d.version} through the preview",
            serving,
            ("Unknown", Reason.VALIDATING, f"validating version {d.version}"),
        )
        return
    validated: tuple[ConditionStatus, Reason, str] = (
        ("True", Reason.VALIDATION_PASSED, f"version {d.version} passed validation")
        if d.spec.validation
        else (
            "True",
            Reason.NOT_CONFIGURED,
            f"version {d.version} is ready; no spec.validation configured",
        )
    )
    settings = d.spec.strategy.blue_green_settings
    # The first version goes live at once (as in Argo Rollouts): nothing serves it could hurt.
    manual = not settings.auto_promote and d.stable is not None
    if manual and d.observed.promote_annotation != d.version:
        draft.decide(
            d,
            Phase.PROGRESSING,
            Reason.AWAITING_PROMOTION,
            f"candidate {d.version} is ready and validated; set the annotation "
            f"{naming.ANNOTATION_PROMOTE}={d.version} to switch traffic",
            serving,
            validated,
        )
        return
    _promote(d, view, validated)


def _promote(
    d: draft.Draft, view: DeploymentView | None, validated: tuple[ConditionStatus, Reason, str]
) -> None:
    """Switch the stable Service to the candidate in one selector change."""
    window = d.spec.strategy.blue_green_settings.post_promotion_validation_seconds
    previous = d.stable
    d.update(
        stable_hash=d.desired,
        previous_stable_hash=previous,
        promoted_at=d.now(),
        candidate_hash=None,
    )
    d.current_version = d.version
    message = f"traffic switched to version {d.version}"
    d.events.append(EmitEvent("Normal", str(Reason.PROMOTED), message))
    if window > 0 and d.lkg and d.lkg != d.desired:
        d.actions.append(RunValidation(d.desired, "stable"))
        d.requeue.append(float(window))
        draft.decide(
            d,
            Phase.VALIDATING,
            Reason.PROMOTED,
            f"{message}; checking it through the stable Service for {window}s",
            view,
            validated,
        )
        return
    draft.complete(d, Reason.PROMOTED)
    draft.decide(d, Phase.AVAILABLE, Reason.ROLLOUT_COMPLETE, message, view, validated)


def _post_promotion(d: draft.Draft) -> None:
    """Promoted but not yet LKG: watch it through the stable Service, flip back on failure."""
    assert d.stable is not None and d.lkg is not None
    window = d.spec.strategy.blue_green_settings.post_promotion_validation_seconds
    since = d.observed.since_promotion_seconds or 0.0
    check = d.observed.validation(d.desired, "stable")
    signal = d.observed.failure(d.desired)
    if d.lkg_version:
        _ensure_bg(d, d.lkg)
    if signal is not None or (check is not None and not check.passed):
        detail = signal.message if signal else (check.message if check else "")
        reason = Reason(signal.kind.value) if signal else Reason.VALIDATION_FAILED
        message = f"version {d.version} failed after promotion: {detail or 'output mismatch'}"
        d.update(stable_hash=d.lkg, previous_stable_hash=d.desired)
        d.current_version = d.lkg_version
        draft.fail(d, reason, message)
        draft.blocked_verdict(d, d.observed.deployment(d.lkg))
        return
    view = d.observed.deployment(d.desired)
    _ensure_bg(d, d.desired)
    if since >= window:
        d.update(last_known_good_hash=d.desired, previous_stable_hash=d.lkg)
        draft.complete(d, Reason.PROMOTED)
        draft.decide(
            d,
            Phase.AVAILABLE,
            Reason.ROLLOUT_COMPLETE,
            f"version {d.version} passed its {window}s post-promotion check",
            view,
        )
        return
    d.actions.append(RunValidation(d.desired, "stable"))
    d.requeue.append(min(max(window - since, 0.0) + 1.0, draft.POLL_SECONDS))
    draft.decide(
        d,
        Phase.VALIDATING,
        Reason.PROMOTED,
        # No running count in the message: it would rewrite the status on every look.
        f"version {d.version} serves; checking it through the stable Service for {window}s "
        "after the switch",
        view,
        ("True", Reason.VALIDATION_PASSED, f"version {d.version} passed the preview check"),
    )


def _bg_services(d: draft.Draft) -> None:
    if d.stable:
        d.actions.append(EnsureService(naming.stable_service_name(d.name), d.stable))
    preview = naming.preview_service_name(d.name)
    if d.spec.strategy.blue_green_settings.preview_service:
        d.actions.append(EnsureService(preview, d.desired))
    elif d.observed.preview_selector is not None:
        d.actions.append(DeleteService(preview))
