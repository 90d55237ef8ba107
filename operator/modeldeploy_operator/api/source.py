"""Where a model version's weights live: S3 or the Hugging Face Hub, plus a checksum manifest."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from modeldeploy_operator.api.schema import (
    BUCKET,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    HF_REPO,
    REGION,
    SHA256_HEX,
    URL,
    ApiModel,
    cel,
)


class SecretKeyRef(ApiModel):
    """A key inside a Secret in the ModelDeployment's namespace."""

    name: Annotated[str, Field(description="Secret name.", pattern=DNS_SUBDOMAIN, max_length=253)]
    key: Annotated[str, Field(description="Key inside the Secret.", min_length=1, max_length=253)]


class S3Source(ApiModel):
    """Weights stored under a prefix of an S3-compatible bucket."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.anonymous) && self.anonymous && has(self.credentialsSecret))",
                    "anonymous requests use no credentials: drop credentialsSecret or anonymous",
                )
            ]
        }
    )

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
    anonymous: Annotated[
        bool | None,
        Field(
            description=(
                "Send unsigned requests, for a public bucket. Without it and without "
                "credentialsSecret, the default AWS credential chain applies: IRSA or Pod "
                "Identity through runtime.serviceAccountName, or an instance role."
            ),
        ),
    ] = None
    addressing_style: Annotated[
        Literal["auto", "path", "virtual"] | None,
        Field(description="URL style; path-style when endpoint is set, auto otherwise."),
    ] = None
    retry_mode: Annotated[
        Literal["standard", "adaptive"] | None,
        Field(description="botocore retry mode for throttling and 5xx answers; standard."),
    ] = None

    @model_validator(mode="after")
    def _anonymous_has_no_credentials(self) -> S3Source:
        if self.anonymous and self.credentials_secret:
            raise ValueError(
                f"anonymous is true but credentialsSecret is {self.credentials_secret!r}: "
                "anonymous requests use no credentials; drop credentialsSecret or anonymous"
            )
        return self


class HuggingFaceSource(ApiModel):
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
    offline: Annotated[
        bool | None,
        Field(
            description=(
                "Use only the hub cache baked into the image or volume (HF_HOME); unset: "
                "online unless the pod env sets HF_HUB_OFFLINE."
            ),
        ),
    ] = None


class ModelSource(ApiModel):
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


class ModelSpec(ApiModel):
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
