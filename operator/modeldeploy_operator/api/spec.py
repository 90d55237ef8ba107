"""The `ModelDeployment` spec (modeldeploy.dev/v1alpha1) as pydantic models.

These models are the single source of the CRD's OpenAPI schema (see `crdgen`), so every
field carries a description and its constraints. Cross-field rules live twice on purpose:
as CEL (`x-kubernetes-validations`, so the API server refuses bad objects at `kubectl apply`)
and as model validators (so nothing malformed reaches the planner when the operator reads
an object that predates a schema change).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic.config import JsonDict

from modeldeploy_operator.api.pod import DisruptionSpec, EnvFromSource, EnvVarSource, PodSpec
from modeldeploy_operator.api.rollout import BlueGreenSpec, RollingSpec, StrategySpec
from modeldeploy_operator.api.schema import (
    ABSOLUTE_PATH,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    API_VERSION,
    DEFAULT_GPU_RESOURCE,
    DNS_SUBDOMAIN,
    ENV_NAME,
    EXTENDED_RESOURCE,
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


class ResourceList(ApiModel):
    """CPU and memory quantities, in Kubernetes quantity syntax."""

    cpu: Annotated[
        str | None, Field(description="CPU, e.g. 500m or 2.", pattern=QUANTITY, max_length=32)
    ] = None
    memory: Annotated[
        str | None,
        Field(description="Memory, e.g. 2Gi.", pattern=QUANTITY, max_length=32),
    ] = None


class ResourceSpec(ApiModel):
    """Compute resources of the serving container."""

    requests: Annotated[ResourceList, Field(description="Guaranteed resources.")] = ResourceList(
        cpu="500m", memory="1Gi"
    )
    limits: Annotated[ResourceList, Field(description="Resource ceilings.")] = ResourceList(
        memory="2Gi"
    )
    gpu: Annotated[
        int,
        Field(description="GPUs per pod, requested as the gpuResourceName limit.", ge=0, le=16),
    ] = 0
    gpu_resource_name: Annotated[
        str,
        Field(
            description=(
                "Extended resource the GPUs are requested as: nvidia.com/gpu, amd.com/gpu or a "
                "MIG profile such as nvidia.com/mig-1g.10gb."
            ),
            pattern=EXTENDED_RESOURCE,
            max_length=253,
        ),
    ] = DEFAULT_GPU_RESOURCE


class EnvVar(ApiModel):
    """An environment variable of the runtime: a literal value, or one taken from elsewhere."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    "set value or valueFrom, not both",
                    ".valueFrom",
                )
            ]
        }
    )

    name: Annotated[str, Field(description="Variable name.", pattern=ENV_NAME, max_length=256)]
    value: Annotated[str, Field(description="Variable value.", max_length=32768)] = ""
    value_from: Annotated[
        EnvVarSource | None,
        Field(description="Take the value from a Secret, ConfigMap or pod field instead."),
    ] = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value_from is not None and self.value:
            raise ValueError(
                f"env {self.name}: both value and valueFrom are set; keep one"
            )
        return self


class WarmupSpec(ApiModel):
    """Inputs run through the model before readiness, to compile kernels and fill caches."""

    inputs: Annotated[
        list[Annotated[str, Field(max_length=8192)]],
        Field(description="Warm-up inputs.", min_length=1, max_length=64),
    ] = ["hello world"]
    iterations: Annotated[
        int, Field(description="Times each input is run during warm-up.", ge=1, le=100)
    ] = 3


class RuntimeSpec(ApiModel):
    """How the bundled runtime serves the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.resources) || !has(self.resources.gpu) "
                    "|| self.resources.gpu == 0 || self.device != 'cpu'",
                    "resources.gpu needs device cuda or auto",
                    ".resources.gpu",
                )
            ]
        }
    )

    image: Annotated[
        str,
        Field(description="Runtime container image.", min_length=1, max_length=1024),
    ] = "modeldeploy/runtime:0.1.0"
    task: Annotated[
        Literal["embedding", "text-classification"],
        Field(description="What the model does: embedding or text-classification."),
    ]
    device: Annotated[
        Literal["cpu", "cuda", "auto"],
        Field(description="Where the model runs; auto picks cuda when a GPU is visible."),
    ] = "cpu"
    dtype: Annotated[
        Literal["float32", "float16", "bfloat16"],
        Field(description="Weight dtype after loading."),
    ] = "float32"
    allow_pickle: Annotated[
        bool,
        Field(description="Allow pickle (.bin) weights; off because unpickling runs code."),
    ] = False
    resources: Annotated[ResourceSpec, Field(description="Container resources.")] = ResourceSpec()
    env: Annotated[
        list[EnvVar],
        Field(description="Extra environment variables for the runtime.", max_length=64),
    ] = []
    env_from: Annotated[
        list[EnvFromSource],
        Field(
            description="Secrets or ConfigMaps whose every key becomes a runtime variable.",
            max_length=16,
        ),
    ] = []
    warmup: Annotated[WarmupSpec, Field(description="Warm-up before readiness.")] = WarmupSpec()
    port: Annotated[
        int, Field(description="Port the runtime serves HTTP on.", ge=1024, le=65535)
    ] = 8080
    startup_timeout_seconds: Annotated[
        int | None,
        Field(
            description=(
                "How long the startup probe lets a pod fetch, load, warm up and validate "
                "before it is restarted; derived from the model when unset."
            ),
            ge=10,
            le=86400,
        ),
    ] = None
    service_account_name: Annotated[
        str | None,
        Field(
            description=(
                "ServiceAccount the serving pods run as (its token is then mounted), so an "
                "IRSA (eks.amazonaws.com/role-arn), Pod Identity or workload identity binding "
                "on it reaches the fetch container; no token is mounted when unset."
            ),
            pattern=DNS_SUBDOMAIN,
            max_length=253,
        ),
    ] = None

    @model_validator(mode="after")
    def _gpu_needs_cuda(self) -> RuntimeSpec:
        if self.resources.gpu > 0 and self.device == "cpu":
            raise ValueError(
                f"resources.gpu: a GPU is requested ({self.resources.gpu}) but device is "
                "'cpu'; set device to 'cuda' or 'auto', or gpu to 0"
            )
        return self


class ExpectedOutput(ApiModel):
    """What the model must answer for the validation input: a label or an embedding."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.label) != has(self.embedding)",
                    "exactly one of label or embedding must be set",
                )
            ]
        }
    )

    label: Annotated[
        str | None,
        Field(description="Exact label expected (text-classification).", max_length=256),
    ] = None
    embedding: Annotated[
        list[float] | None,
        Field(description="Expected embedding (embedding task).", min_length=1, max_length=8192),
    ] = None
    min_cosine_similarity: Annotated[
        float,
        Field(description="Pass when cosine(expected, actual) >= this.", gt=0.0, le=1.0),
    ] = 0.99

    @model_validator(mode="after")
    def _exactly_one(self) -> ExpectedOutput:
        if (self.label is None) == (self.embedding is None):
            raise ValueError(
                "exactly one of label or embedding must be set: label for "
                "text-classification, embedding for embedding"
            )
        return self


class ValidationSpec(ApiModel):
    """A known input and the output a correct model gives for it."""

    input: Annotated[str, Field(description="The known input.", min_length=1, max_length=8192)]
    expected: Annotated[ExpectedOutput, Field(description="The expected output.")]
    timeout_seconds: Annotated[
        int, Field(description="How long one validation may take.", ge=1, le=3600)
    ] = 60


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

    @model_validator(mode="after")
    def _volume_settings(self) -> CacheSpec:
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
                cel(
                    "!has(self.validation) || !has(self.validation.expected.label) "
                    "|| self.runtime.task == 'text-classification'",
                    "validation.expected.label needs runtime.task text-classification",
                    ".validation.expected.label",
                ),
                cel(
                    "!has(self.validation) || !has(self.validation.expected.embedding) "
                    "|| self.runtime.task == 'embedding'",
                    "validation.expected.embedding needs runtime.task embedding",
                    ".validation.expected.embedding",
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
        if expected.label is not None and self.runtime.task != "text-classification":
            raise ValueError(
                "validation.expected.label: a label needs runtime.task text-classification, "
                f"got task {self.runtime.task!r}; give expected.embedding instead"
            )
        if expected.embedding is not None and self.runtime.task != "embedding":
            raise ValueError(
                "validation.expected.embedding: an embedding needs runtime.task embedding, "
                f"got task {self.runtime.task!r}; give expected.label instead"
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
