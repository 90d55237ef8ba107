"""The runtime config file: one JSON document the operator writes into a ConfigMap and the
runtime reads. camelCase on the wire; unknown keys are refused by name."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

# Whole seconds stay whole on the wire: the operator writes ints, and the config's bytes
# shape the pod template (a float would re-roll every pod on upgrade).
Seconds = int | float


class _Model(BaseModel):
    # camelCase on the wire, unknown keys refused so a typo is an error, not a silent default.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class S3Source(_Model):
    """An S3 (or S3-compatible) prefix holding the model files."""

    bucket: str = Field(min_length=1, description="Bucket name.")
    prefix: str = Field(default="", description="Key prefix; every object under it is copied.")
    endpoint: str | None = Field(default=None, description="Endpoint URL for S3-compatible stores.")
    region: str | None = Field(default=None, description="Region name.")
    anonymous: bool = Field(
        default=False, description="Send unsigned requests (a public bucket); no credentials."
    )
    addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        default=None,
        description="URL style; unset: path-style with a custom endpoint, else botocore's auto.",
    )
    retry_mode: Literal["standard", "adaptive"] | None = Field(
        default=None, description="botocore retry mode for throttling and 5xx; unset: standard."
    )


class HuggingFaceSource(_Model):
    """A Hugging Face repository at one revision."""

    repo: str = Field(min_length=1, description="Repository id, e.g. org/name.")
    revision: str = Field(default="main", description="Branch, tag or commit.")
    include: list[str] = Field(default_factory=list, description="Glob patterns to copy.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to skip.")
    offline: bool | None = Field(
        default=None,
        description="Use only the pre-populated hub cache; unset: HF_HUB_OFFLINE decides.",
    )


class Source(_Model):
    """Exactly one of s3 or huggingFace."""

    s3: S3Source | None = None
    hugging_face: HuggingFaceSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.s3 is None) == (self.hugging_face is None):
            raise ValueError(
                "model.source must set exactly one of 's3' or 'huggingFace'"
            )
        return self


class ModelRef(_Model):
    """Which model version to serve and where it comes from."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    source: Source
    sha256: dict[str, str] = Field(
        default_factory=dict, description="Relative file path -> expected hex sha256."
    )


class Warmup(_Model):
    """Inputs run through the model before it is declared ready."""

    inputs: list[str] = Field(default_factory=lambda: ["hello world"])
    iterations: int = Field(default=3, ge=0, le=100)


class ExpectedEntity(_Model):
    """One named entity the token classifier must find in the validation input."""

    label: str = Field(min_length=1, description="Entity group, e.g. PER (no B-/I- prefix).")
    start: int = Field(ge=0, description="Character offset where the entity starts.")
    end: int = Field(gt=0, description="Character offset just past the entity.")


# Which `expected` key each task is judged by; the CRD's CEL rules say the same.
EXPECTED_KEYS: dict[str, tuple[str, ...]] = {
    "embedding": ("embedding",),
    "reranking": ("order",),
    "text-classification": ("label", "labels"),
    "token-classification": ("entities",),
    "text-generation": ("text", "contains", "pattern"),
}
# Every kind of expected output, in the order messages list them.
EXPECTED_KINDS = ("label", "labels", "embedding", "order", "entities", "text", "contains",
                  "pattern")


class Expected(_Model):
    """The expected output: exactly one of label, labels, embedding, order or entities."""

    label: str | None = None
    labels: list[str] | None = Field(
        default=None, description="Every label scoring >= labelThreshold (multi-label)."
    )
    label_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    embedding: list[float] | None = None
    min_cosine_similarity: float = Field(default=0.99, ge=-1.0, le=1.0)
    order: list[int] | None = Field(
        default=None, description="Document indices, most relevant first (reranking)."
    )
    scores: list[float] | None = Field(
        default=None, description="Relevance score per document, in input order (reranking)."
    )
    score_tolerance: float = Field(default=0.01, ge=0.0)
    entities: list[ExpectedEntity] | None = None
    text: str | None = Field(
        default=None, description="Text generation: the exact greedy completion."
    )
    contains: str | None = Field(
        default=None, description="Text generation: a substring of the greedy completion."
    )
    pattern: str | None = Field(
        default=None,
        description="Text generation: a regular expression found in the greedy completion.",
    )

    @property
    def kind(self) -> str:
        """The one key that is set (one of EXPECTED_KINDS)."""
        return next(k for k in EXPECTED_KINDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _exactly_one(self) -> Expected:
        keys = [k for k in EXPECTED_KINDS if getattr(self, k) is not None]
        if len(keys) != 1:
            raise ValueError(
                "validation.expected must set exactly one of "
                + ", ".join(f"'{k}'" for k in EXPECTED_KINDS) + f" (got {keys or 'none'})"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(
                    f"validation.expected.pattern {self.pattern!r} is not a regular "
                    f"expression: {error}"
                ) from None
        if self.scores is not None and self.order is None:
            raise ValueError("validation.expected.scores needs 'order' (reranking)")
        if self.order is not None and sorted(self.order) != list(range(len(self.order))):
            raise ValueError(
                f"validation.expected.order must list each document index once, got {self.order}"
            )
        if self.scores is not None and self.order is not None and (
                len(self.scores) != len(self.order)):
            raise ValueError("validation.expected.scores needs one score per document")
        return self


class Validation(_Model):
    """A known input and what the model must answer for it."""

    input: str = Field(description="The known text; the query for reranking.")
    documents: list[str] | None = Field(
        default=None, description="Reranking only: the documents scored against the input."
    )
    expected: Expected
    timeout_seconds: Seconds = Field(default=60.0, gt=0)
    max_tokens: int | None = Field(
        default=None, ge=1, le=4096,
        description="Text generation: tokens the golden prompt generates (unset: 16).",
    )

    @model_validator(mode="after")
    def _documents_fit(self) -> Validation:
        if self.expected.order is not None:
            if not self.documents:
                raise ValueError("validation.documents is required with expected.order")
            if len(self.documents) != len(self.expected.order):
                raise ValueError(
                    f"validation.expected.order has {len(self.expected.order)} indices for "
                    f"{len(self.documents)} validation.documents; give one per document"
                )
        elif self.documents is not None:
            raise ValueError("validation.documents is only for reranking (expected.order)")
        if self.max_tokens is not None and self.expected.kind not in (
                "text", "contains", "pattern"):
            raise ValueError("validation.maxTokens is only for text generation")
        return self


class StageDeadlines(_Model):
    """Seconds each start-up stage may take; None leaves a stage unbounded."""

    fetch: Seconds | None = Field(default=None, gt=0, description="The fetch container's copy.")
    load: Seconds | None = Field(
        default=None, gt=0, description="Container start until the weights are on the device."
    )
    warmup: Seconds | None = Field(default=None, gt=0, description="All warm-up iterations.")
    validation: Seconds | None = Field(default=None, gt=0, description="The known-input check.")


class CacheSettings(_Model):
    """Where the model cache lives inside the container."""

    path: str = "/var/cache/modeldeploy"
    size_limit_bytes: int | None = Field(
        default=None, gt=0,
        description="Most bytes the cache may hold; unreferenced versions are evicted first.",
    )


class Batching(_Model):
    """How the runtime batches concurrent requests into shared forward passes."""

    max_batch_tokens: int | None = Field(
        default=None, ge=16, le=1 << 20,
        description="Tokens (padded) in one forward pass; a single longer input runs alone. "
                    "Unset: 2048 on a CPU, 16384 on a GPU.")
    max_wait_milliseconds: Seconds = Field(
        default=0, ge=0, le=1000,
        description="How long the oldest queued request may wait for others to join its "
                    "batch; 0: a batch takes whatever queued while the model was busy.")
    max_queued_texts: int = Field(
        default=1024, ge=1, le=1 << 20,
        description="Texts waiting for the model before requests are refused (503, "
                    "Retry-After).")
    request_timeout_seconds: Seconds = Field(
        default=30, gt=0, le=3600,
        description="A request not answered within this gets an error, never a late answer.")


class Generation(_Model):
    """How the text-generation task shares the model between requests."""

    max_concurrent: int = Field(
        default=4, ge=1, le=256,
        description="Generations running at once; more are answered 503 with Retry-After.",
    )
    max_tokens: int = Field(
        default=512, ge=1, le=131072,
        description="The most tokens one request may generate (and the default max_tokens).",
    )


Task = Literal["embedding", "reranking", "text-classification", "token-classification",
               "text-generation"]


class RuntimeConfig(_Model):
    """Everything the runtime needs to fetch, load, check and serve one model version."""

    model: ModelRef
    task: Task
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    allow_pickle: bool = False
    # Off by default: it runs Python code shipped inside the model repository.
    trust_remote_code: bool = False
    warmup: Warmup = Field(default_factory=Warmup)
    validation: Validation | None = None
    generation: Generation = Field(default_factory=Generation)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    stage_deadline_seconds: StageDeadlines = Field(default_factory=StageDeadlines)
    batching: Batching = Field(default_factory=Batching)

    @model_validator(mode="after")
    def _validation_fits_task(self) -> RuntimeConfig:
        if self.validation is not None:
            kind = self.validation.expected.kind
            allowed = EXPECTED_KEYS[self.task]
            if kind not in allowed:
                raise ValueError(
                    f"validation.expected.{kind} does not fit task {self.task!r}; set "
                    + " or ".join(f"validation.expected.{k}" for k in allowed)
                )
        return self


def describe(error: ValidationError) -> str:
    """pydantic's errors as one line naming each key, the value and the fix."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}' (remove it or check its spelling)")
        else:
            parts.append(f"{where}: {item['msg']} (got {item.get('input')!r:.80})")
    return "; ".join(parts)


def to_json(config: RuntimeConfig) -> dict[str, object]:
    """The config as the camelCase JSON document the runtime reads."""
    return config.model_dump(mode="json", by_alias=True)
