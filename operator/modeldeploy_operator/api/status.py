"""The `ModelDeployment` status as pydantic models, and the vocabulary it is written in.

Vocabulary (used the same way in the planner, the handlers and the docs):
- stable: the version the stable Service sends traffic to (status.currentVersion).
- candidate: the version a rollout is bringing up (status.targetVersion while Progressing).
- preview: the Service that reaches the candidate before promotion (blue-green only).
- last-known-good (LKG): the newest version that passed validation and served traffic;
  the version a failed rollout flips back to.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from modeldeploy_contract.cache import CacheReference
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Phase(StrEnum):
    """Where a ModelDeployment stands, as `kubectl get md` shows it."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    VALIDATING = "Validating"
    AVAILABLE = "Available"
    ROLLED_BACK = "RolledBack"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class ConditionType(StrEnum):
    """The condition types every ModelDeployment carries from its first reconcile."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    VALIDATED = "Validated"
    DEGRADED = "Degraded"


class Reason(StrEnum):
    """CamelCase condition reasons; one word each, stable across releases."""

    INVALID_SPEC = "InvalidSpec"
    TEMPLATE_UNAVAILABLE = "TemplateUnavailable"
    RECONCILE_FAILED = "ReconcileFailed"
    CREATED = "Created"
    NEW_VERSION = "NewVersion"
    ROLLING_OUT = "RollingOut"
    PREFETCHING = "Prefetching"
    WAITING_FOR_READY = "WaitingForReady"
    VALIDATING = "Validating"
    VALIDATION_PASSED = "ValidationPassed"
    VALIDATION_FAILED = "ValidationFailed"
    AWAITING_PROMOTION = "AwaitingPromotion"
    PROMOTED = "Promoted"
    ROLLOUT_COMPLETE = "RolloutComplete"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    CRASH_LOOP = "CrashLoop"
    LOAD_FAILED = "LoadFailed"
    FETCH_FAILED = "FetchFailed"
    CACHE_FULL = "CacheFull"
    OOM_KILLED = "OOMKilled"
    FETCH_DEADLINE_EXCEEDED = "FetchDeadlineExceeded"
    LOAD_DEADLINE_EXCEEDED = "LoadDeadlineExceeded"
    WARMUP_DEADLINE_EXCEEDED = "WarmupDeadlineExceeded"
    VALIDATION_DEADLINE_EXCEEDED = "ValidationDeadlineExceeded"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"
    REVERTED = "RevertedToLastKnownGood"
    FIRST_DEPLOY_FAILED = "FirstDeployFailed"
    PREVIOUSLY_FAILED = "PreviouslyFailed"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    UNSCHEDULABLE = "Unschedulable"
    AS_EXPECTED = "AsExpected"
    SCALED_TO_ZERO = "ScaledToZero"
    NOT_CONFIGURED = "NotConfigured"
    UNKNOWN = "Unknown"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_Model):
    """A Kubernetes-style condition."""

    type: Annotated[str, Field(description="Ready, Progressing, Validated or Degraded.")]
    status: Annotated[
        Literal["True", "False", "Unknown"], Field(description="True, False, Unknown.")
    ]
    reason: Annotated[str, Field(description="One CamelCase word saying why.")]
    message: Annotated[str, Field(description="What happened, for people.")] = ""
    last_transition_time: Annotated[
        str | None, Field(description="When status last changed (RFC 3339).")
    ] = None
    observed_generation: Annotated[
        int | None, Field(description="The metadata.generation this condition was computed from.")
    ] = None


class LoadSeconds(_Model):
    """The runtime's measured start-up phases, in seconds, from its /status."""

    import_: Annotated[
        float | None, Field(alias="import", description="Importing the ML libraries.")
    ] = None
    file_io: Annotated[float | None, Field(description="Reading the weight files.")] = None
    deserialize: Annotated[float | None, Field(description="Turning bytes into tensors.")] = None
    device_transfer: Annotated[
        float | None, Field(description="Moving tensors to the device and dtype.")
    ] = None
    warmup: Annotated[float | None, Field(description="Warm-up inferences.")] = None
    validation: Annotated[float | None, Field(description="The known-input check.")] = None
    time_to_ready: Annotated[
        float | None, Field(description="Process start to ready, all phases together.")
    ] = None


Outcome = Literal["Progressing", "Promoted", "RolledBack", "Failed", "Superseded"]


class Revision(_Model):
    """One rollout attempt and how it ended."""

    version: Annotated[str, Field(description="Model version rolled out.")]
    template_hash: Annotated[
        str, Field(description="Hash of version + pod template; names blue-green Deployments.")
    ] = ""
    outcome: Annotated[Outcome, Field(description="How the rollout ended (or Progressing).")]
    reason: Annotated[str, Field(description="Condition reason for the outcome.")] = ""
    message: Annotated[str, Field(description="Details, e.g. the runtime's failure line.")] = ""
    started_at: Annotated[str | None, Field(description="When the rollout started (RFC 3339).")] = (
        None
    )
    finished_at: Annotated[
        str | None, Field(description="When the outcome was reached (RFC 3339).")
    ] = None


class RolloutState(_Model):
    """Bookkeeping the planner needs to resume a rollout after an operator restart."""

    stable_hash: Annotated[
        str | None, Field(description="Template hash of the version serving traffic.")
    ] = None
    last_known_good_hash: Annotated[
        str | None,
        Field(description="Template hash of the last-known-good version (the flip-back target)."),
    ] = None
    previous_stable_hash: Annotated[
        str | None,
        Field(description="Template hash that served before the last promotion (blue-green)."),
    ] = None
    candidate_hash: Annotated[
        str | None, Field(description="Template hash of the version being rolled out.")
    ] = None
    started_at: Annotated[
        str | None, Field(description="When the current rollout started (RFC 3339).")
    ] = None
    promoted_at: Annotated[
        str | None, Field(description="When traffic switched to the candidate (blue-green).")
    ] = None
    aborted_at: Annotated[str | None, Field(description="When the rollout was abandoned.")] = None
    failed_versions: Annotated[
        list[str],
        Field(description="Versions that failed; not retried until the version or retry changes."),
    ] = []
    failed_hashes: Annotated[
        list[str],
        Field(
            description=(
                "Template hashes that failed, newest last; the newest is not retried while "
                "the spec still renders it."
            )
        ),
    ] = []
    retry_token: Annotated[
        str | None,
        Field(description="Last seen value of the modeldeploy.dev/retry annotation."),
    ] = None


class CachedVersion(_Model):
    """One version of this model on the nodes' shared caches, as their collectors report."""

    version: Annotated[str, Field(description="Model version.")]
    nodes: Annotated[int, Field(description="Nodes holding a complete copy.")]
    bytes: Annotated[int, Field(description="Size of one copy, in bytes.")]
    size: Annotated[str, Field(description="bytes, for people (e.g. 90.9MB).")]
    node_names: Annotated[list[str], Field(description="The nodes holding it.")] = []


class CacheStatus(_Model):
    """The shared cache's lifecycle: what must stay, and what the nodes hold."""

    references: Annotated[
        list[CacheReference],
        Field(description="Versions the nodes' cache collectors must keep; the rest go."),
    ] = []
    versions: Annotated[
        list[CachedVersion], Field(description="Versions cached on nodes, newest report first.")
    ] = []


class ModelDeploymentStatus(_Model):
    """Observed state of a ModelDeployment."""

    phase: Annotated[
        Phase,
        Field(
            description="Pending, Progressing, Validating, Available, "
            "RolledBack, Degraded or Failed."
        ),
    ] = Phase.PENDING
    current_version: Annotated[
        str | None, Field(description="The version serving traffic (stable).")
    ] = None
    target_version: Annotated[str | None, Field(description="The version the spec asks for.")] = (
        None
    )
    last_known_good_version: Annotated[
        str | None, Field(description="Newest version that passed validation and served traffic.")
    ] = None
    replicas: Annotated[int, Field(description="Desired serving pods.")] = 0
    selector: Annotated[
        str | None,
        Field(
            description=(
                "Label selector of every version's serving pods, for the scale subresource "
                "(kubectl scale, HorizontalPodAutoscaler)."
            )
        ),
    ] = None
    ready_replicas: Annotated[int, Field(description="Ready pods of the stable version.")] = 0
    ready: Annotated[str, Field(description="ready/desired, as printed by kubectl get md.")] = "0/0"
    strategy: Annotated[str | None, Field(description="Rolling or BlueGreen.")] = None
    message: Annotated[str, Field(description="One line on what is happening.")] = ""
    conditions: Annotated[
        list[Condition], Field(description="Ready, Progressing, Validated, Degraded.")
    ] = []
    observed_generation: Annotated[
        int | None, Field(description="The metadata.generation last acted on.")
    ] = None
    load_seconds: Annotated[
        LoadSeconds | None, Field(description="Start-up phases of the newest ready pod.")
    ] = None
    model_revision: Annotated[
        str | None,
        Field(
            description=(
                "The exact source revision the newest ready pod of targetVersion loaded: the "
                "commit a hub branch or tag resolved to (unset for S3 sources)."
            ),
            max_length=256,
        ),
    ] = None
    history: Annotated[
        list[Revision], Field(description="Recent rollouts, newest last.", max_length=20)
    ] = []
    rollout: Annotated[RolloutState, Field(description="Rollout bookkeeping.")] = RolloutState()
    cache: Annotated[
        CacheStatus | None,
        Field(description="Shared caches (hostPath, PVC) only: referenced and cached versions."),
    ] = None

    def to_dict(self) -> dict[str, object]:
        """The status as it goes into a patch: camelCase, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
