"""The four conditions, derived from a phase and what is serving; and the invalid-spec status.

Pure helpers: the planner and the handlers both call them, nothing here reads a clock. A
condition's lastTransitionTime moves only when its status changes (Kubernetes convention),
so a reason that changes under an unchanged status keeps the old time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modeldeploy_operator.api.status import (
    Condition,
    ConditionType,
    ModelDeploymentStatus,
    Phase,
    Reason,
)

ConditionStatus = Literal["True", "False", "Unknown"]

# Phases in which a rollout is under way, and phases that mean something went wrong.
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.VALIDATING})
TROUBLE_PHASES = frozenset({Phase.ROLLED_BACK, Phase.DEGRADED, Phase.FAILED})


@dataclass(frozen=True)
class Verdict:
    """What the planner concluded this reconcile, in the words conditions are written in."""

    phase: Phase
    reason: Reason
    message: str
    # Validated condition: about the version the spec asks for.
    validated: ConditionStatus
    validated_reason: Reason
    validated_message: str
    # Ready condition: the serving version has all desired pods ready.
    serving_ready: bool
    ready_message: str


def _ready_condition(verdict: Verdict) -> tuple[ConditionStatus, Reason, str]:
    if verdict.serving_ready:
        return "True", Reason.AS_EXPECTED, verdict.ready_message
    if verdict.phase is Phase.FAILED:
        return "False", verdict.reason, verdict.ready_message
    return "False", Reason.WAITING_FOR_READY, verdict.ready_message


def _progressing_condition(verdict: Verdict) -> tuple[ConditionStatus, Reason, str]:
    if verdict.phase in ACTIVE_PHASES:
        return "True", verdict.reason, verdict.message
    if verdict.phase is Phase.AVAILABLE:
        reason = Reason.REVERTED if verdict.reason is Reason.REVERTED else Reason.ROLLOUT_COMPLETE
        return "False", reason, verdict.message
    if verdict.phase is Phase.ROLLED_BACK:
        return "False", Reason.ROLLED_BACK, verdict.message
    return "False", verdict.reason, verdict.message


def _degraded_condition(verdict: Verdict) -> tuple[ConditionStatus, Reason, str]:
    if verdict.phase in TROUBLE_PHASES:
        return "True", verdict.reason, verdict.message
    return "False", Reason.AS_EXPECTED, ""


def _stamp(
    previous: list[Condition],
    kind: ConditionType,
    value: tuple[ConditionStatus, Reason | str, str],
    generation: int,
    now: str,
) -> Condition:
    status, reason, message = value
    before = next((c for c in previous if c.type == kind.value), None)
    kept = before is not None and before.status == status and before.last_transition_time
    return Condition(
        type=kind.value,
        status=status,
        reason=str(reason),
        message=message,
        last_transition_time=before.last_transition_time if kept and before else now,
        observed_generation=generation,
    )


def build_conditions(
    previous: list[Condition], verdict: Verdict, generation: int, now: str
) -> list[Condition]:
    """Ready, Progressing, Validated and Degraded, in that order, consistent with the phase."""
    values: list[tuple[ConditionType, tuple[ConditionStatus, Reason | str, str]]] = [
        (ConditionType.READY, _ready_condition(verdict)),
        (ConditionType.PROGRESSING, _progressing_condition(verdict)),
        (
            ConditionType.VALIDATED,
            (verdict.validated, verdict.validated_reason, verdict.validated_message),
        ),
        (ConditionType.DEGRADED, _degraded_condition(verdict)),
    ]
    return [_stamp(previous, kind, value, generation, now) for kind, value in values]


def invalid_spec_status(
    status: ModelDeploymentStatus, errors: list[str], generation: int, now: str
) -> ModelDeploymentStatus:
    """The status to write when the spec fails `parse_spec`.

    An invalid edit of a running deployment must not take the running version down: the
    handlers leave every child object as it is, the phase becomes Degraded (Failed when
    nothing serves yet) and the Degraded condition says which field to fix.
    """
    message = "; ".join(errors) if errors else "the spec is invalid"
    return blocked_status(status, Reason.INVALID_SPEC, message, "spec rejected", generation, now)


def blocked_status(
    status: ModelDeploymentStatus,
    reason: Reason,
    message: str,
    summary: str,
    generation: int,
    now: str,
) -> ModelDeploymentStatus:
    """The status when the operator cannot act until the user changes something.

    Every child stays as it is; Degraded (Failed when nothing serves yet) with `reason`.
    """
    serving = status.current_version is not None
    phase = Phase.DEGRADED if serving else Phase.FAILED
    previous = list(status.conditions)
    ready = next((c for c in previous if c.type == ConditionType.READY.value), None)
    validated = next((c for c in previous if c.type == ConditionType.VALIDATED.value), None)
    ready_value: tuple[ConditionStatus, Reason | str, str] = (
        (ready.status, ready.reason, ready.message)
        if ready is not None and serving
        else ("False", reason, "nothing serves: " + message)
    )
    validated_value: tuple[ConditionStatus, Reason | str, str] = (
        (validated.status, validated.reason, validated.message)
        if validated is not None
        else ("Unknown", reason, summary)
    )
    conditions = [
        _stamp(previous, ConditionType.READY, ready_value, generation, now),
        _stamp(
            previous,
            ConditionType.PROGRESSING,
            ("False", reason, message),
            generation,
            now,
        ),
        _stamp(previous, ConditionType.VALIDATED, validated_value, generation, now),
        _stamp(
            previous,
            ConditionType.DEGRADED,
            ("True", reason, message),
            generation,
            now,
        ),
    ]
    text = (
        f"{summary}, still serving {status.current_version}: {message}"
        if serving
        else f"{summary}: {message}"
    )
    return status.model_copy(
        update={
            "phase": phase,
            "message": text,
            "conditions": conditions,
            "observed_generation": generation,
        }
    )
