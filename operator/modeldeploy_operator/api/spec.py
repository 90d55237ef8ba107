"""The `ModelDeployment` spec (modeldeploy.dev/v1alpha1) as pydantic models.

These models are the single source of the CRD's OpenAPI schema (see `crdgen`), so every
field carries a description and its constraints. Cross-field rules live twice on purpose:
as CEL (`x-kubernetes-validations`, so the API server refuses bad objects at `kubectl apply`)
and as model validators (so nothing malformed reaches the planner when the operator reads
an object that predates a schema change).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.config import JsonDict

from modeldeploy_operator.api import quantity
from modeldeploy_operator.api.pod import DisruptionSpec, PodSpec
from modeldeploy_operator.api.rollout import BlueGreenSpec, RollingSpec, StrategySpec
from modeldeploy_operator.api.runtime import (
    EXPECTED_TASK,
    EnvVar,
    ResourceList,
    ResourceSpec,
    RuntimeSpec,
    WarmupSpec,
)
from modeldeploy_operator.api.schema import (
    ABSOLUTE_PATH,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    API_VERSION,
    DNS_SUBDOMAIN,
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    QUANTITY,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ApiModel,
    cel,
)
from modeldeploy_operator.api.source import (
    HuggingFaceSource,
    ModelSource,
    ModelSpec,
    S3Source,
    SecretKeyRef,
)
from modeldeploy_operator.api.spec_errors import InvalidSpecError, explain
from modeldeploy_operator.api.validation import EXPECTED_KEYS, ExpectedOutput, ValidationSpec

__all__ = [
    "ANNOTATION_PROMOTE",
    "ANNOTATION_RETRY",
    "API_VERSION",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "ROOT_VALIDATIONS",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "BlueGreenSpec",
    "CacheSpec",
    "DisruptionSpec",
    "EnvVar",
    "ExpectedOutput",
    "HuggingFaceSource",
    "InvalidSpecError",
    "ModelDeploymentSpec",
    "ModelSource",
    "ModelSpec",
    "PodSpec",
    "ResourceList",
    "ResourceSpec",
    "RollingSpec",
    "RuntimeSpec",
    "S3Source",
    "SecretKeyRef",
    "StageDeadlineSpec",
    "StrategySpec",
    "ValidationSpec",
    "WarmupSpec",
    "parse_spec",
]


class CacheSpec(ApiModel):
    """The local model cache the init container fills."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.volume != 'hostPath' || has(self.hostPath)",
                    "hostPath must be set when volume is hostPath",
                    ".hostPath",
                ),
                cel(
                    "self.volume != 'persistentVolumeClaim' || has(self.claimName)",
                    "claimName must be set when volume is persistentVolumeClaim",
                    ".claimName",
                ),
                cel(
                    "!has(self.prefetch) || !self.prefetch || self.volume != 'emptyDir'",
                    "prefetch needs a shared cache: set volume to hostPath or "
                    "persistentVolumeClaim, or remove prefetch",
                    ".prefetch",
                ),
                # A quantity is more than 0 bytes when it has no sign and a non-zero digit
                # before its suffix (a fraction of a byte rounds up): a regular expression
                # any API server evaluates, unlike the newer quantity() library.
                cel(
                    "!has(self.sizeLimit) || self.sizeLimit.matches('^[+]?[0-9.]*[1-9]')",
                    "sizeLimit must be more than 0 bytes, e.g. 20Gi; remove it for no limit",
                    ".sizeLimit",
                ),
            ]
        }
    )

    volume: Annotated[
        Literal["emptyDir", "hostPath", "persistentVolumeClaim"],
        Field(description="Volume kind: emptyDir (per pod), hostPath (per node) or a PVC."),
    ] = "emptyDir"
    size: Annotated[
        str | None,
        Field(description="Size limit of an emptyDir cache, e.g. 10Gi.", pattern=QUANTITY),
    ] = None
    size_limit: Annotated[
        str | None,
        Field(
            description=(
                "Most bytes the model cache may hold, e.g. 20Gi: a fetch evicts least-recently-"
                "used unreferenced versions to stay under it, or fails with CacheFull."
            ),
            pattern=QUANTITY,
        ),
    ] = None
    path: Annotated[
        str,
        Field(
            description="Where the cache is mounted in the pod.",
            pattern=ABSOLUTE_PATH,
            max_length=1024,
        ),
    ] = "/var/cache/modeldeploy"
    host_path: Annotated[
        str | None,
        Field(description="Node directory for volume hostPath.", pattern=ABSOLUTE_PATH),
    ] = None
    claim_name: Annotated[
        str | None,
        Field(
            description="PersistentVolumeClaim for volume persistentVolumeClaim.",
            pattern=DNS_SUBDOMAIN,
            max_length=253,
        ),
    ] = None

    prefetch: Annotated[
        bool,
        Field(
            description=(
                "Shared caches only: on a version change or a first deploy, fetch the version "
                "onto the nodes of the current pods and those pod.nodeSelector or a required "
                "node affinity selects first (step Prefetching), then start its pods."
            )
        ),
    ] = False

    @property
    def size_limit_bytes(self) -> int | None:
        """sizeLimit in bytes; None when unset."""
        return None if self.size_limit is None else quantity.to_bytes(self.size_limit)

    @property
    def shared(self) -> bool:
        """True when versions outlive a pod (hostPath, PVC): the cache has a lifecycle."""
        return self.volume != "emptyDir"

    @model_validator(mode="after")
    def _volume_settings(self) -> CacheSpec:
        if self.prefetch and self.volume == "emptyDir":
            raise ValueError(
                "prefetch: true needs a shared cache (an emptyDir lives and dies with its "
                "pod); set volume to hostPath or persistentVolumeClaim, or remove prefetch"
            )
        if self.size_limit is not None:
            try:
                limit = quantity.to_bytes(self.size_limit)
            except ValueError as error:
                raise ValueError(f"sizeLimit: {error}") from None
            if limit <= 0:
                raise ValueError(f"sizeLimit: {self.size_limit!r} must be more than 0 bytes")
        if self.volume == "hostPath" and not self.host_path:
            raise ValueError("hostPath: required when volume is hostPath; set a node directory")
        if self.volume == "persistentVolumeClaim" and not self.claim_name:
            raise ValueError(
                "claimName: required when volume is persistentVolumeClaim; name an existing PVC"
            )
        return self


STAGES = ("fetch", "load", "warmup", "validation")


StageSeconds = Annotated[int | None, Field(ge=1, le=86400)]


class StageDeadlineSpec(ApiModel):
    """Seconds each start-up stage of a serving pod may take; unset leaves it unbounded."""

    fetch: Annotated[
        StageSeconds, Field(description="The fetch init container's copy from the model source.")
    ] = None
    load: Annotated[
        StageSeconds,
        Field(
            description=(
                "Serving container start until the weights are on the device (includes imports)."
            )
        ),
    ] = None
    warmup: Annotated[StageSeconds, Field(description="All warm-up iterations.")] = None
    validation: Annotated[
        StageSeconds, Field(description="The known-input check inside the pod.")
    ] = None


def _stage_within_progress_rules() -> list[JsonDict]:
    return [
        cel(
            f"!has(self.stageDeadlineSeconds) || !has(self.stageDeadlineSeconds.{stage}) "
            f"|| self.stageDeadlineSeconds.{stage} < self.progressDeadlineSeconds",
            f"stageDeadlineSeconds.{stage} must be below progressDeadlineSeconds, "
            "or the progress deadline always passes first",
            f".stageDeadlineSeconds.{stage}",
        )
        for stage in STAGES
    ]


class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *(
                    cel(
                        f"!has(self.validation) || !has(self.validation.expected.{key}) "
                        f"|| self.runtime.task == '{task}'",
                        f"validation.expected.{key} needs runtime.task {task}",
                        f".validation.expected.{key}",
                    )
                    for key, task in EXPECTED_TASK.items()
                ),
                *_stage_within_progress_rules(),
            ]
        }
    )

    model: Annotated[ModelSpec, Field(description="The model and version to serve.")]
    runtime: Annotated[RuntimeSpec, Field(description="How the runtime serves it.")]
    replicas: Annotated[int, Field(description="Serving pods.", ge=0, le=1000)] = 1
    strategy: Annotated[StrategySpec, Field(description="How new versions roll out.")] = (
        StrategySpec()
    )
    validation: Annotated[
        ValidationSpec | None,
        Field(description="Known input and expected output; checked before any traffic."),
    ] = None
    cache: Annotated[CacheSpec, Field(description="Local model cache.")] = CacheSpec()
    progress_deadline_seconds: Annotated[
        int,
        Field(
            description="A rollout not finished after this long fails and flips back.",
            ge=30,
            le=86400,
        ),
    ] = 600
    stage_deadline_seconds: Annotated[
        StageDeadlineSpec,
        Field(
            description=(
                "Per-stage deadlines of a serving pod; an overrun fails the version at once "
                "(reason FetchDeadlineExceeded, LoadDeadlineExceeded, ...) instead of waiting "
                "out the progress deadline."
            )
        ),
    ] = StageDeadlineSpec()
    pod: Annotated[
        PodSpec,
        Field(description="Placement and identity of the serving pods (every version's)."),
    ] = PodSpec()
    disruption: Annotated[
        DisruptionSpec | None,
        Field(
            description=(
                "PodDisruptionBudget over the serving pods of every version; unset, "
                "minAvailable 1 when replicas > 1 (none otherwise)."
            )
        ),
    ] = None

    @model_validator(mode="after")
    def _stages_within_progress(self) -> ModelDeploymentSpec:
        for stage in STAGES:
            value = getattr(self.stage_deadline_seconds, stage)
            if value is not None and value >= self.progress_deadline_seconds:
                raise ValueError(
                    f"stageDeadlineSeconds.{stage}: must be below progressDeadlineSeconds "
                    f"({self.progress_deadline_seconds}), got {value}; lower it or raise "
                    "progressDeadlineSeconds"
                )
        return self

    @model_validator(mode="after")
    def _expected_matches_task(self) -> ModelDeploymentSpec:
        if self.validation is None:
            return self
        expected = self.validation.expected
        key = next(k for k in EXPECTED_KEYS if getattr(expected, k) is not None)
        wanted = EXPECTED_TASK[key]
        if self.runtime.task != wanted:
            fits = [k for k, t in EXPECTED_TASK.items() if t == self.runtime.task]
            raise ValueError(
                f"validation.expected.{key}: needs runtime.task {wanted}, got task "
                f"{self.runtime.task!r}; give expected.{' or expected.'.join(fits)} instead"
            )
        return self


# The root-level rules see metadata.name, which the spec models cannot.
ROOT_VALIDATIONS: list[JsonDict] = [
    cel(
        f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
        "(child Deployments and Services append a suffix)",
    ),
    cel(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be a DNS-1035 label (lowercase letters, digits, '-', "
        "starting with a letter): it names the Service",
    ),
]


def parse_spec(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """Validate a raw `spec` mapping; raise `InvalidSpecError` naming each bad field."""
    try:
        return ModelDeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc) from None
