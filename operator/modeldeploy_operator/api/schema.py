"""Shared ground of the API models: names, patterns, the CEL helper and the base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
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
# An extended resource name (domain-qualified), as GPUs and MIG slices are requested.
EXTENDED_RESOURCE = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

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


class ApiModel(BaseModel):
    """Base for every API shape: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
