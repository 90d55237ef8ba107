"""The runtime's `/status` document: what the operator reads of a serving pod."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Phase(enum.StrEnum):
    """Where the runtime is in its life."""

    LOADING = "Loading"
    WARMING_UP = "WarmingUp"
    VALIDATING = "Validating"
    READY = "Ready"
    FAILED = "Failed"


# The measured start-up phases, in order, as keys of `Status.phases`.
PHASE_NAMES = ("import", "fileIO", "deserialize", "deviceTransfer", "warmup", "validation")


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ValidationResult(_Wire):
    """A validation verdict: passed is None when validation was skipped."""

    model_config = ConfigDict(frozen=True)

    passed: bool | None
    message: str
    score: float | None = None


SKIPPED = ValidationResult(passed=None, message="no validation configured; skipped")


class ModelId(_Wire):
    """The served model's name and version."""

    name: str
    version: str
    revision: str | None = Field(
        default=None, description="The exact source revision served, e.g. the hub commit sha."
    )


class Status(_Wire):
    """The /status document."""

    phase: Phase
    model: ModelId
    task: str
    phases: dict[str, float | None]
    time_to_ready_seconds: float | None = None
    validation: ValidationResult = Field(
        default_factory=lambda: ValidationResult(passed=None, message="not run yet")
    )
    error: str | None = None
