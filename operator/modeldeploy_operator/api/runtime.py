"""How the bundled runtime serves the model: `spec.runtime` and what it is made of."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from modeldeploy_operator.api.pod import EnvFromSource, EnvVarSource
from modeldeploy_operator.api.schema import (
    DEFAULT_GPU_RESOURCE,
    DNS_SUBDOMAIN,
    ENV_NAME,
    EXTENDED_RESOURCE,
    QUANTITY,
    ApiModel,
    cel,
)


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


class BatchingSpec(ApiModel):
    """How the runtime batches concurrent requests; unset fields keep the runtime's defaults."""

    max_batch_tokens: Annotated[
        int | None,
        Field(description=(
            "Tokens (padded) in one forward pass; unset: 2048 on a CPU, 16384 on a GPU."),
            ge=16, le=1048576),
    ] = None
    max_wait_milliseconds: Annotated[
        int | None,
        Field(description=(
            "How long the oldest queued request waits for others to join its batch; unset: "
            "0 (a batch takes whatever queued while the model was busy)."), ge=0, le=1000),
    ] = None
    max_queued_texts: Annotated[
        int | None,
        Field(description=(
            "Texts waiting for the model before requests get 503 with Retry-After; unset: "
            "1024."), ge=1, le=1048576),
    ] = None
    request_timeout_seconds: Annotated[
        int | None,
        Field(description=(
            "A request not answered within this gets a 503 (DeadlineExceeded), never a late "
            "answer; unset: 30."), ge=1, le=3600),
    ] = None


class OmitNewDefaults(ApiModel):
    """Fields added after v0.1 leave the spec's dump while they hold their default, so an
    operator upgrade does not change the template hash and re-roll every existing pod."""

    _new_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_new_defaults(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._new_fields:
                field = type(self).model_fields[name]
                if getattr(self, name) == field.default:
                    data.pop(field.alias if info.by_alias and field.alias else name, None)
        return data


TASKS = ("embedding", "reranking", "text-classification", "token-classification",
         "text-generation")
# Which expected key fits which task (the contract's EXPECTED_KEYS, as CEL and messages).
EXPECTED_TASK = {
    "label": "text-classification",
    "labels": "text-classification",
    "embedding": "embedding",
    "order": "reranking",
    "entities": "token-classification",
    "text": "text-generation",
    "contains": "text-generation",
    "pattern": "text-generation",
}


class GenerationSpec(ApiModel):
    """How the text-generation task shares the model between requests."""

    max_concurrent: Annotated[
        int,
        Field(
            description=(
                "Generations running at once per pod; more are answered 503 with Retry-After."
            ),
            ge=1,
            le=256,
        ),
    ] = 4
    max_tokens: Annotated[
        int,
        Field(
            description=(
                "The most tokens one request may generate, and the default when a request "
                "gives no max_tokens (the model's context length caps it too)."
            ),
            ge=1,
            le=131072,
        ),
    ] = 512


class RuntimeSpec(OmitNewDefaults):
    """How the bundled runtime serves the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.resources) || !has(self.resources.gpu) "
                    "|| self.resources.gpu == 0 || self.device != 'cpu'",
                    "resources.gpu needs device cuda or auto",
                    ".resources.gpu",
                ),
                cel(
                    "!has(self.generation) || self.task == 'text-generation'",
                    "generation is only for task text-generation",
                    ".generation",
                ),
            ]
        }
    )

    image: Annotated[
        str,
        Field(description="Runtime container image.", min_length=1, max_length=1024),
    ] = "modeldeploy/runtime:0.1.0"
    _new_fields = ("trust_remote_code", "batching", "generation")

    task: Annotated[
        Literal["embedding", "reranking", "text-classification", "token-classification",
                "text-generation"],
        Field(
            description=(
                "What the model does: embedding, reranking (cross-encoder scores of "
                "query/document pairs), text-classification, token-classification (NER) or "
                "text-generation (a causal LM behind the OpenAI completions APIs)."
            )
        ),
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
    trust_remote_code: Annotated[
        bool,
        Field(
            description=(
                "Run Python code shipped in the model repository (config.json auto_map); "
                "off because it runs that code in the pod."
            )
        ),
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
    batching: Annotated[
        BatchingSpec | None,
        Field(description="Dynamic batching of concurrent requests; unset: the defaults."),
    ] = None
    generation: Annotated[
        GenerationSpec | None,
        Field(
            description=(
                "Text generation only: concurrent generations and token limits; unset: "
                "maxConcurrent 4, maxTokens 512."
            )
        ),
    ] = None
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
        if self.task != "text-generation" and self.generation is not None:
            raise ValueError(
                f"generation: only task text-generation reads it, and task is {self.task!r}; "
                "remove runtime.generation"
            )
        return self
