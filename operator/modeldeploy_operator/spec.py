"""The `ModelDeployment` spec (modeldeploy.dev/v1alpha1) as pydantic models.

These models are the single source of the CRD's OpenAPI schema (see `crdgen`), so every
field carries a description and its constraints. Cross-field rules live twice on purpose:
as CEL (`x-kubernetes-validations`, so the API server refuses bad objects at `kubectl apply`)
and as model validators (so nothing malformed reaches the planner when the operator reads
an object that predates a schema change).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Kubernetes' own quantity syntax (resource.Quantity), so "500m", "2Gi", "1e3" all pass.
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
PERCENT = r"^[0-9]+%$"
SHA256_HEX = r"^[a-f0-9]{64}$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
HF_REPO = r"^[A-Za-z0-9][-._A-Za-z0-9]*(/[A-Za-z0-9][-._A-Za-z0-9]*)?$"
URL = r"^https?://[^\s/$.?#][^\s]*$"
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REGION = r"^[a-z0-9-]+$"
ABSOLUTE_PATH = r"^/[^\s]*$"

# Each child name is "<metadata.name>-<10-char hash>" or "<metadata.name>-preview", and
# Service names are DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH = 52

ANNOTATION_PROMOTE = f"{GROUP}/promote"
ANNOTATION_RETRY = f"{GROUP}/retry"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class _Model(BaseModel):
    """Base for every API shape: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class SecretKeyRef(_Model):
    """A key inside a Secret in the ModelDeployment's namespace."""

    name: Annotated[str, Field(description="Secret name.", pattern=DNS_SUBDOMAIN, max_length=253)]
    key: Annotated[str, Field(description="Key inside the Secret.", min_length=1, max_length=253)]


class S3Source(_Model):
    """Weights stored under a prefix of an S3-compatible bucket."""

    bucket: Annotated[
        str,
        Field(
            description="Bucket name (3-63 characters: lowercase letters, digits, dots, hyphens).",
            pattern=BUCKET,
        ),
    ]
    prefix: Annotated[
        str,
        Field(
            description="Key prefix holding the model files of this version (e.g. minilm/v1/).",
            max_length=1024,
        ),
    ] = ""
    endpoint: Annotated[
        str | None,
        Field(
            description="S3 endpoint URL for non-AWS stores (MinIO, Ceph); AWS when unset.",
            pattern=URL,
            max_length=2048,
        ),
    ] = None
    region: Annotated[
        str | None,
        Field(description="Region of the bucket.", pattern=REGION, max_length=64),
    ] = None
    credentials_secret: Annotated[
        str | None,
        Field(
            description=(
                "Name of a Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(AWS_SESSION_TOKEN optional); referenced by the pods, never copied."
            ),
            pattern=DNS_SUBDOMAIN,
            max_length=253,
        ),
    ] = None


class HuggingFaceSource(_Model):
    """Weights from a Hugging Face Hub repository (or a mirror given by `endpoint`)."""

    repo: Annotated[
        str, Field(description="Repository id, e.g. org/model.", pattern=HF_REPO, max_length=256)
    ]
    revision: Annotated[
        str,
        Field(
            description="Branch, tag or commit; pin a commit for reproducible rollouts.",
            min_length=1,
            max_length=256,
        ),
    ] = "main"
    include: Annotated[
        list[Annotated[str, Field(max_length=256)]],
        Field(description="Glob patterns of files to fetch; all files when empty.", max_length=64),
    ] = []
    exclude: Annotated[
        list[Annotated[str, Field(max_length=256)]],
        Field(description="Glob patterns of files to skip.", max_length=64),
    ] = []
    endpoint: Annotated[
        str | None,
        Field(description="Hub endpoint URL (a mirror); the public hub when unset.", pattern=URL),
    ] = None
    token_secret: Annotated[
        SecretKeyRef | None,
        Field(description="Secret key holding a hub token, for gated or private repos."),
    ] = None


class ModelSource(_Model):
    """Where the weights of this version live: exactly one of s3 or huggingFace."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.s3) != has(self.huggingFace)",
                    "exactly one of s3 or huggingFace must be set",
                )
            ]
        }
    )

    s3: Annotated[S3Source | None, Field(description="S3-compatible object store.")] = None
    hugging_face: Annotated[
        HuggingFaceSource | None, Field(description="Hugging Face Hub repository.")
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.s3 is None) == (self.hugging_face is None):
            raise ValueError(
                "exactly one of s3 or huggingFace must be set, got "
                + ("both" if self.s3 else "neither")
                + "; keep the one that holds this version's weights"
            )
        return self


class ModelSpec(_Model):
    """Which model and version to serve, and where its weights live."""

    name: Annotated[
        str,
        Field(
            description="Model name; also the cache directory and the inference endpoint name.",
            pattern=DNS_LABEL,
            max_length=63,
        ),
    ]
    version: Annotated[
        str,
        Field(
            description=(
                "Model version: changing it starts a rollout. A DNS label (e.g. v2, 2024-06-01)."
            ),
            pattern=DNS_LABEL,
            min_length=1,
            max_length=63,
        ),
    ]
    source: Annotated[ModelSource, Field(description="Where the weights of this version live.")]
    sha256: Annotated[
        dict[str, Annotated[str, Field(pattern=SHA256_HEX)]] | None,
        Field(
            description=(
                "Optional manifest: file path relative to the version's root -> lowercase "
                "hex sha256. Every listed file is verified after download."
            ),
            max_length=256,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(
                        "self.all(p, !p.startsWith('/') && !p.matches('(^|/)[.][.](/|$)'))",
                        "sha256: file paths must be relative and stay inside the model "
                        "(no leading / and no ..)",
                    )
                ]
            },
        ),
    ] = None

    @model_validator(mode="after")
    def _manifest_paths_stay_inside(self) -> ModelSpec:
        for path in self.sha256 or {}:
            if path.startswith("/") or ".." in path.split("/"):
                raise ValueError(
                    f"sha256: file path must be relative and stay inside the model, got {path!r}"
                )
        return self


class ResourceList(_Model):
    """CPU and memory quantities, in Kubernetes quantity syntax."""

    cpu: Annotated[
        str | None, Field(description="CPU, e.g. 500m or 2.", pattern=QUANTITY, max_length=32)
    ] = None
    memory: Annotated[
        str | None,
        Field(description="Memory, e.g. 2Gi.", pattern=QUANTITY, max_length=32),
    ] = None


class ResourceSpec(_Model):
    """Compute resources of the serving container."""

    requests: Annotated[ResourceList, Field(description="Guaranteed resources.")] = ResourceList(
        cpu="500m", memory="1Gi"
    )
    limits: Annotated[ResourceList, Field(description="Resource ceilings.")] = ResourceList(
        memory="2Gi"
    )
    gpu: Annotated[
        int,
        Field(description="GPUs per pod, requested as the nvidia.com/gpu limit.", ge=0, le=16),
    ] = 0


class EnvVar(_Model):
    """A plain environment variable for the serving container."""

    name: Annotated[str, Field(description="Variable name.", pattern=ENV_NAME, max_length=256)]
    value: Annotated[str, Field(description="Variable value.", max_length=32768)] = ""


class WarmupSpec(_Model):
    """Inputs run through the model before readiness, to compile kernels and fill caches."""

    inputs: Annotated[
        list[Annotated[str, Field(max_length=8192)]],
        Field(description="Warm-up inputs.", min_length=1, max_length=64),
    ] = ["hello world"]
    iterations: Annotated[
        int, Field(description="Times each input is run during warm-up.", ge=1, le=100)
    ] = 3


class RuntimeSpec(_Model):
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

    @model_validator(mode="after")
    def _gpu_needs_cuda(self) -> RuntimeSpec:
        if self.resources.gpu > 0 and self.device == "cpu":
            raise ValueError(
                f"resources.gpu: a GPU is requested ({self.resources.gpu}) but device is "
                "'cpu'; set device to 'cuda' or 'auto', or gpu to 0"
            )
        return self


# Strict int: a bare "50" is neither a count nor a percentage to Kubernetes, so refuse it here too.
IntOrPercent = Annotated[
    Annotated[int, Field(strict=True)] | Annotated[str, Field(pattern=PERCENT)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def _int_or_percent_is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _int_or_percent_rules(field: str) -> list[JsonDict]:
    return [
        cel(
            f"type(self.{field}) == int ? self.{field} >= 0 : self.{field}.matches('^[0-9]+%$')",
            f"{field} must be an integer >= 0 or a percentage such as 25%",
            f".{field}",
        )
    ]


def _is_zero_cel(field: str) -> str:
    return f"(type(self.{field}) == int ? self.{field} == 0 : self.{field} == '0%')"


class RollingSpec(_Model):
    """Rolling update settings, passed to the Deployment controller."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_int_or_percent_rules("maxSurge"),
                *_int_or_percent_rules("maxUnavailable"),
                cel(
                    f"!({_is_zero_cel('maxSurge')} && {_is_zero_cel('maxUnavailable')})",
                    "maxSurge and maxUnavailable must not both be 0: no pod could be replaced",
                ),
            ]
        }
    )

    max_surge: Annotated[
        IntOrPercent,
        Field(description="Extra pods allowed above replicas during a rollout (count or %)."),
    ] = 1
    max_unavailable: Annotated[
        IntOrPercent,
        Field(description="Pods allowed to be unavailable during a rollout (count or %)."),
    ] = 0

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingSpec:
        for field, value in (
            ("maxSurge", self.max_surge),
            ("maxUnavailable", self.max_unavailable),
        ):
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{field}: must be >= 0, got {value}")
        if _int_or_percent_is_zero(self.max_surge) and _int_or_percent_is_zero(
            self.max_unavailable
        ):
            raise ValueError(
                "maxSurge and maxUnavailable are both 0, so no pod could ever be replaced; "
                "set maxSurge to at least 1"
            )
        return self


class BlueGreenSpec(_Model):
    """Blue-green settings: a full candidate behind a preview Service, then one switch."""

    auto_promote: Annotated[
        bool,
        Field(
            description=(
                "Switch traffic as soon as the candidate is ready and validated; when false, "
                "wait for the annotation modeldeploy.dev/promote=<version>."
            )
        ),
    ] = True
    scale_down_delay_seconds: Annotated[
        int,
        Field(
            description="How long the previous version stays up after the switch (rollback).",
            ge=0,
            le=86400,
        ),
    ] = 30
    abort_scale_down_delay_seconds: Annotated[
        int,
        Field(
            description="How long a failed candidate stays up (logs reachable) before scale-down.",
            ge=0,
            le=86400,
        ),
    ] = 30
    preview_service: Annotated[
        bool, Field(description="Create <name>-preview pointing at the candidate.")
    ] = True
    post_promotion_validation_seconds: Annotated[
        int,
        Field(
            description=(
                "After the switch, keep validating through the stable Service for this long; "
                "a failure flips back while the previous version is still up."
            ),
            ge=0,
            le=3600,
        ),
    ] = 0


class StrategySpec(_Model):
    """How a new version replaces the current one."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type == 'BlueGreen' || !has(self.blueGreen)",
                    "blueGreen settings are only allowed with type BlueGreen",
                    ".blueGreen",
                ),
                cel(
                    "self.type == 'Rolling' || !has(self.rolling)",
                    "rolling settings are only allowed with type Rolling",
                    ".rolling",
                ),
            ]
        }
    )

    type: Annotated[Literal["Rolling", "BlueGreen"], Field(description="Rolling or BlueGreen.")] = (
        "Rolling"
    )
    rolling: Annotated[RollingSpec | None, Field(description="Settings for type Rolling.")] = None
    blue_green: Annotated[
        BlueGreenSpec | None, Field(description="Settings for type BlueGreen.")
    ] = None

    @model_validator(mode="after")
    def _settings_match_type(self) -> StrategySpec:
        if self.type == "Rolling" and self.blue_green is not None:
            raise ValueError("blueGreen: only allowed with type BlueGreen; set type: BlueGreen")
        if self.type == "BlueGreen" and self.rolling is not None:
            raise ValueError("rolling: only allowed with type Rolling; set type: Rolling")
        return self

    @property
    def rolling_settings(self) -> RollingSpec:
        """The rolling settings in force (defaults when unset)."""
        return self.rolling or RollingSpec()

    @property
    def blue_green_settings(self) -> BlueGreenSpec:
        """The blue-green settings in force (defaults when unset)."""
        return self.blue_green or BlueGreenSpec()


class ExpectedOutput(_Model):
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


class ValidationSpec(_Model):
    """A known input and the output a correct model gives for it."""

    input: Annotated[str, Field(description="The known input.", min_length=1, max_length=8192)]
    expected: Annotated[ExpectedOutput, Field(description="The expected output.")]
    timeout_seconds: Annotated[
        int, Field(description="How long one validation may take.", ge=1, le=3600)
    ] = 60


class CacheSpec(_Model):
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


class ModelDeploymentSpec(_Model):
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


class InvalidSpecError(ValueError):
    """The spec cannot be served as written; `errors` lists one readable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("int", "str", "constrained-str"):
            # pydantic's union-member and validator-kind markers are not field names.
            continue
        elif not _FIELD_NAME.match(part):
            # A map key (e.g. a file path in model.sha256), not a field name.
            path += f"[{part!r}]"
        else:
            path += f".{to_camel(part) if '_' in part else part}"
    return path


_PATTERN_HINTS = {
    DNS_LABEL: "a DNS label: lowercase letters, digits and '-', at most 63 characters",
    DNS_SUBDOMAIN: "a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    QUANTITY: "a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi",
    PERCENT: "an integer or a percentage such as 25%",
    SHA256_HEX: "64 lowercase hex digits",
    URL: "an http:// or https:// URL such as http://minio.storage:9000",
    BUCKET: "an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'",
    REGION: "a region such as us-east-1",
    ABSOLUTE_PATH: "an absolute path without spaces, such as /var/cache/modeldeploy",
    ENV_NAME: "an environment variable name such as HF_HOME (letters, digits, '_', '-', '.')",
    HF_REPO: "a repository id such as org/model",
}


# pydantic error type -> (wording, ctx key): "spec.replicas: must be >= 0, got -1".
_BOUNDS = {
    "greater_than_equal": ("must be >= {}", "ge"),
    "greater_than": ("must be > {}", "gt"),
    "less_than_equal": ("must be <= {}", "le"),
    "less_than": ("must be < {}", "lt"),
    "too_short": ("must have at least {} item(s)", "min_length"),
    "too_long": ("must have at most {} item(s)", "max_length"),
    "string_too_short": ("must be at least {} characters long", "min_length"),
    "string_too_long": ("must be at most {} characters long", "max_length"),
}


def _explain(error: dict[str, Any]) -> str:
    location = _format_location(tuple(error["loc"]))
    kind = error["type"]
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        # Model-level validators name their field relative to the model ("maxSurge: ...").
        first_word = message.split(" ", 1)[0]
        if first_word.endswith(":") and first_word[:1].islower():
            return f"{location}.{message}"
        return f"{location}: {message}"
    value = error.get("input")
    if isinstance(value, list | dict):
        shown = f"{len(value)} {'items' if isinstance(value, list) else 'keys'}"
    else:
        shown = repr(value)
    ctx = error.get("ctx", {})
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{location}: must not be empty, got {shown}"
    if kind in _BOUNDS:
        wording, key = _BOUNDS[kind]
        return f"{location}: {wording.format(ctx.get(key))}, got {shown}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        hint = _PATTERN_HINTS.get(pattern, f"match {pattern}")
        return f"{location}: must be {hint}, got {shown}"
    if kind == "extra_forbidden":
        return f"{location}: unknown field; remove it or check its spelling"
    if kind == "missing":
        return f"{location}: required field is missing; set it"
    message = str(error["msg"]).replace("Input should be", "must be", 1)
    return f"{location}: {message[:1].lower()}{message[1:]}, got {shown}"


def parse_spec(raw: dict[str, Any]) -> ModelDeploymentSpec:
    """Validate a raw `spec` mapping; raise `InvalidSpecError` naming each bad field."""
    from pydantic import ValidationError

    try:
        return ModelDeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [dict(err) for err in exc.errors(include_url=False)]
        # An int-or-percent value fails both union members; the type half is noise when the
        # pattern half already says what is wanted.
        located = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "string_pattern_mismatch"}
        errors = [
            e for e in errors if not (e["type"] == "int_type" and tuple(e["loc"][:-1]) in located)
        ]
        lines = [_explain(err) for err in errors]
        raise InvalidSpecError(list(dict.fromkeys(lines))) from None
