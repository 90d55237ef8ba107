"""The planner's working copy and the transitions both strategies share.

`Draft` is one reconcile's plan under construction; the functions here move it between
states (start a rollout, fail it, complete it, settle on the last-known-good) and write
the verdict the conditions are derived from. Pure, like the planner that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec
from modeldeploy_operator.api.status import (
    ModelDeploymentStatus,
    Outcome,
    Phase,
    Reason,
    Revision,
    RolloutState,
)
from modeldeploy_operator.planning.actions import Action, EmitEvent
from modeldeploy_operator.planning.conditions import ConditionStatus, Verdict
from modeldeploy_operator.planning.observations import DeploymentView, Observed

# Scaled-down Deployments of earlier templates kept for a quick manual rollback.
REVISION_HISTORY_LIMIT = 2
HISTORY_LIMIT = 10
FAILED_LIMIT = 10
# How often to look again while waiting on pods (watch events usually come sooner).
POLL_SECONDS = 10.0


@dataclass
class Draft:
    """The plan being built: a mutable working copy, frozen into a `Plan` at the end."""

    name: str
    spec: ModelDeploymentSpec
    before: ModelDeploymentStatus
    observed: Observed
    rollout: RolloutState
    current_version: str | None
    lkg_version: str | None
    history: list[Revision]
    actions: list[Action] = field(default_factory=list)
    events: list[EmitEvent] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    verdict: Verdict | None = None
    # Deployments (by template hash) that must stay at full size.
    keep: set[str] = field(default_factory=set)

    @property
    def desired(self) -> str:
        return self.observed.desired_hash

    @property
    def version(self) -> str:
        return self.spec.model.version

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    @property
    def blue_green(self) -> bool:
        return self.spec.strategy.type == "BlueGreen"

    @property
    def lkg(self) -> str | None:
        return self.rollout.last_known_good_hash

    @property
    def stable(self) -> str | None:
        return self.rollout.stable_hash

    def update(self, **changes: object) -> None:
        self.rollout = self.rollout.model_copy(update=changes)

    def now(self) -> str | None:
        return self.observed.now or None


def honour_retry(d: Draft) -> None:
    token = d.observed.retry_annotation
    if token is None or token == d.rollout.retry_token:
        return
    failed = [h for h in d.rollout.failed_hashes if h != d.desired]
    d.update(failed_hashes=failed, retry_token=token)
    if len(failed) != len(d.before.rollout.failed_hashes):
        d.events.append(EmitEvent("Normal", "Retry", f"retrying version {d.version} on request"))


def blocked(d: Draft) -> bool:
    """The spec still renders the template that failed last: do not retry it in a loop."""
    return bool(d.rollout.failed_hashes) and d.rollout.failed_hashes[-1] == d.desired


# --- history -------------------------------------------------------------------------------


def record(
    d: Draft, template_hash: str, version: str, outcome: Outcome, reason: Reason, message: str
) -> None:
    """Close the open revision of `template_hash` with `outcome` (or add a closed one)."""
    for index in range(len(d.history) - 1, -1, -1):
        entry = d.history[index]
        if entry.template_hash == template_hash and entry.outcome == "Progressing":
            d.history[index] = entry.model_copy(
                update={
                    "outcome": outcome,
                    "reason": str(reason),
                    "message": message,
                    "finished_at": d.now(),
                }
            )
            return
    d.history.append(
        Revision(
            version=version,
            template_hash=template_hash,
            outcome=outcome,
            reason=str(reason),
            message=message,
            started_at=d.now(),
            finished_at=d.now(),
        )
    )


def version_of(d: Draft, template_hash: str) -> str:
    for entry in reversed(d.history):
        if entry.template_hash == template_hash:
            return entry.version
    view = d.observed.deployment(template_hash)
    return view.version if view else ""


def last_failure(d: Draft) -> tuple[Reason, str]:
    for entry in reversed(d.history):
        if entry.template_hash == d.desired and entry.outcome in ("RolledBack", "Failed"):
            try:
                return Reason(entry.reason), entry.message
            except ValueError:
                return Reason.PREVIOUSLY_FAILED, entry.message
    return Reason.PREVIOUSLY_FAILED, f"version {d.version} failed before"


# --- transitions shared by both strategies --------------------------------------------------


def supersede_candidate(d: Draft, reason: Reason) -> None:
    candidate = d.rollout.candidate_hash
    if candidate is None or candidate == d.desired:
        return
    version = version_of(d, candidate)
    message = f"version {version} replaced by {d.version} before it finished"
    record(d, candidate, version, "Superseded", reason, message)
    d.events.append(EmitEvent("Normal", str(Reason.SUPERSEDED), message))
    d.update(candidate_hash=None, started_at=None)


def start_rollout(d: Draft) -> float:
    """Make the desired template the candidate; return seconds since its rollout began."""
    if d.rollout.candidate_hash == d.desired:
        if d.rollout.started_at is None:
            # The clock was stopped while scaled to zero; it starts with the first pod.
            d.update(started_at=d.now())
            return 0.0
        return d.observed.elapsed_seconds
    supersede_candidate(d, Reason.SUPERSEDED)
    d.update(candidate_hash=d.desired, started_at=d.now(), aborted_at=None)
    d.history.append(
        Revision(
            version=d.version,
            template_hash=d.desired,
            outcome="Progressing",
            reason=str(Reason.NEW_VERSION),
            started_at=d.now(),
        )
    )
    d.events.append(
        EmitEvent("Normal", str(Reason.NEW_VERSION), f"rolling out version {d.version}")
    )
    return 0.0


def fail(d: Draft, reason: Reason, message: str) -> None:
    """The candidate failed: remember it and report RolledBack (or Failed with no LKG)."""
    failed = [h for h in d.rollout.failed_hashes if h != d.desired] + [d.desired]
    versions = [v for v in d.rollout.failed_versions if v != d.version] + [d.version]
    d.update(
        failed_hashes=failed[-FAILED_LIMIT:],
        failed_versions=versions[-FAILED_LIMIT:],
        candidate_hash=None,
        aborted_at=d.now(),
    )
    outcome: Outcome = "RolledBack" if d.lkg else "Failed"
    record(d, d.desired, d.version, outcome, reason, message)
    d.events.append(EmitEvent("Warning", str(reason), message))


def failure_of_desired(d: Draft, elapsed: float, proven: bool) -> tuple[Reason, str] | None:
    signal = d.observed.failure(d.desired)
    if signal is not None:
        return Reason(signal.kind.value), f"version {d.version}: {signal.message}"
    preview = d.observed.validation(d.desired, "preview")
    if preview is not None and not preview.passed:
        detail = preview.message or "the output did not match spec.validation.expected"
        return Reason.VALIDATION_FAILED, f"version {d.version} failed validation: {detail}"
    deadline = d.spec.progress_deadline_seconds
    if d.replicas > 0 and not proven and elapsed > deadline:
        return (
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"version {d.version} was not ready and validated within "
            f"progressDeadlineSeconds={deadline}",
        )
    if d.replicas > 0 and not proven:
        d.requeue.append(max(deadline - elapsed, 0.0) + 1.0)
    return None


def complete(d: Draft, reason: Reason = Reason.ROLLOUT_COMPLETE) -> None:
    """The desired template is proven: it becomes stable and last-known-good."""
    d.update(
        stable_hash=d.desired,
        last_known_good_hash=d.desired,
        candidate_hash=None,
        started_at=None,
    )
    d.current_version = d.lkg_version = d.version
    message = f"version {d.version} is serving and last-known-good"
    record(d, d.desired, d.version, "Promoted", reason, message)
    d.events.append(EmitEvent("Normal", str(Reason.ROLLOUT_COMPLETE), message))


def serving_ready(d: Draft, view: DeploymentView | None) -> bool:
    """Ready condition: the serving version has every desired pod ready (old or new)."""
    if d.current_version is None:
        return False
    if d.replicas == 0:
        return True
    return view is not None and view.settled and view.ready_replicas >= d.replicas


def settled_on(d: Draft, view: DeploymentView | None) -> bool:
    """Every pod of the Deployment runs its current template, at the desired count, ready."""
    return view is not None and view.replicas == d.replicas and view.fully_ready


def decide(
    d: Draft,
    phase: Phase,
    reason: Reason,
    message: str,
    serving: DeploymentView | None,
    validated: tuple[ConditionStatus, Reason, str] | None = None,
) -> None:
    if validated is None:
        validated = _validated_from_history(d)
    ready = serving_ready(d, serving)
    shown = serving.ready_replicas if serving else 0
    d.verdict = Verdict(
        phase=phase,
        reason=reason,
        message=message,
        validated=validated[0],
        validated_reason=validated[1],
        validated_message=validated[2],
        serving_ready=ready,
        ready_message=(
            f"{shown}/{d.replicas} pods of version {d.current_version} ready"
            if d.current_version
            else "no version serves yet"
        ),
    )


def _validated_from_history(d: Draft) -> tuple[ConditionStatus, Reason, str]:
    if blocked(d):
        reason, message = last_failure(d)
        return "False", reason, message
    if d.desired in (d.lkg, d.stable):
        if d.spec.validation is None:
            message = f"version {d.version} is ready; no spec.validation configured"
            return "True", Reason.NOT_CONFIGURED, message
        return "True", Reason.VALIDATION_PASSED, f"version {d.version} passed validation"
    return "Unknown", Reason.VALIDATING, f"version {d.version} not validated yet"


def steady(d: Draft, serving: DeploymentView | None) -> None:
    """The desired template is the LKG: serve it, and say how healthy it is."""
    reverted = _supersede_reverted(d)
    signal = d.observed.failure(d.desired)
    if d.replicas == 0:
        decide(d, Phase.AVAILABLE, Reason.SCALED_TO_ZERO, "scaled to zero", serving)
    elif settled_on(d, serving):
        if reverted:
            message = f"reverted to last-known-good version {d.version}"
            d.events.append(EmitEvent("Normal", str(Reason.REVERTED), message))
            decide(d, Phase.AVAILABLE, Reason.REVERTED, message, serving)
        elif d.before.phase is Phase.AVAILABLE:
            decide(d, Phase.AVAILABLE, _kept_reason(d), f"version {d.version} is serving", serving)
        else:
            decide(
                d,
                Phase.AVAILABLE,
                Reason.ROLLOUT_COMPLETE,
                f"version {d.version} is serving",
                serving,
            )
    elif signal is not None:
        decide(
            d,
            Phase.DEGRADED,
            Reason(signal.kind.value),
            f"version {d.version}: {signal.message}",
            serving,
        )
    else:
        ready = serving.ready_replicas if serving else 0
        d.requeue.append(POLL_SECONDS)
        reason, message = waiting(
            d, Reason.WAITING_FOR_READY, f"{ready}/{d.replicas} pods of version {d.version} ready"
        )
        decide(d, Phase.PROGRESSING, reason, message, serving)


def _kept_reason(d: Draft) -> Reason:
    kept = next((c for c in d.before.conditions if c.type == "Progressing"), None)
    if kept is not None and kept.reason == Reason.REVERTED.value:
        return Reason.REVERTED
    return Reason.ROLLOUT_COMPLETE


def _supersede_reverted(d: Draft) -> bool:
    """Spec went back to the LKG: close any rollout and tell whether this was a revert."""
    was_elsewhere = d.before.target_version not in (None, d.version)
    supersede_candidate(d, Reason.REVERTED)
    d.update(candidate_hash=None, started_at=None)
    return was_elsewhere


def blocked_verdict(d: Draft, serving: DeploymentView | None) -> None:
    reason, message = last_failure(d)
    if d.lkg:
        summary = (
            f"version {d.version} failed ({message}); serving last-known-good "
            f"{d.lkg_version}. Change the version or set the {naming.ANNOTATION_RETRY} annotation"
        )
        decide(d, Phase.ROLLED_BACK, reason, summary, serving)
    else:
        summary = (
            f"first deploy of version {d.version} failed and there is no earlier version to "
            f"flip back to: {message}. Fix the model or the spec and change the version, or "
            f"set the {naming.ANNOTATION_RETRY} annotation"
        )
        reason = reason if reason is not Reason.PREVIOUSLY_FAILED else Reason.FIRST_DEPLOY_FAILED
        decide(d, Phase.FAILED, reason, summary, serving)


def waiting(d: Draft, reason: Reason, message: str) -> tuple[Reason, str]:
    """`reason`/`message` while pods of the desired template come up, unless the scheduler
    says some cannot be placed: then Unschedulable, in its own words."""
    stuck = d.observed.unschedulable_pods(d.desired)
    if stuck is None:
        return reason, message
    return (
        Reason.UNSCHEDULABLE,
        f"{message}; {stuck.pods} pod(s) of version {d.version} cannot be scheduled: "
        f"{stuck.message}",
    )


def wait_for_replicas(d: Draft, what_then: str, serving: DeploymentView | None) -> None:
    """Scaled to zero: nothing to roll out or prove until replicas > 0; no deadline runs."""
    d.update(started_at=None)
    decide(
        d,
        Phase.PENDING,
        Reason.SCALED_TO_ZERO,
        f"version {d.version} {what_then} once replicas > 0",
        serving,
    )
