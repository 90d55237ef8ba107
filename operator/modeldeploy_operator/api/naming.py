"""Names and labels of the child objects, derived from the ModelDeployment alone."""

from __future__ import annotations

import hashlib
from typing import Literal

from modeldeploy_operator.api.schema import ANNOTATION_PROMOTE, ANNOTATION_RETRY, GROUP

__all__ = [
    "ANNOTATION_PROMOTE",
    "ANNOTATION_RETRY",
    "ANNOTATION_SPEC_SNAPSHOT",
    "CACHE_OWNER_CONTAINER",
    "FETCH_CONTAINER",
    "GROUP",
    "LABEL_MODEL_DEPLOYMENT",
    "LABEL_PREFETCH_FOR",
    "LABEL_TEMPLATE_HASH",
    "LABEL_VERSION",
    "PORT_NAME",
    "SERVE_CONTAINER",
    "config_map_name",
    "deployment_name",
    "disruption_budget_name",
    "pod_selector",
    "preview_service_name",
    "stable_service_name",
    "standard_labels",
]

LABEL_TEMPLATE_HASH = f"{GROUP}/template-hash"
LABEL_VERSION = f"{GROUP}/version"
LABEL_MODEL_DEPLOYMENT = f"{GROUP}/modeldeployment"
# Prefetch pods carry this instead of LABEL_MODEL_DEPLOYMENT, so no Service, Deployment,
# disruption budget or scale selector of the serving pods ever picks them.
LABEL_PREFETCH_FOR = f"{GROUP}/prefetch-for"
ANNOTATION_SPEC_SNAPSHOT = f"{GROUP}/spec-snapshot"
# The serving container's port name: Services target it by name, so each pod's own
# runtime.port is used whatever version the Service currently selects.
PORT_NAME = "http"
FETCH_CONTAINER = "fetch"
# First on a hostPath cache: hands the node's directory to the runtime's user.
CACHE_OWNER_CONTAINER = "cache-owner"
SERVE_CONTAINER = "serve"


def deployment_name(
    md_name: str, strategy: Literal["Rolling", "BlueGreen"], template_hash: str
) -> str:
    """Rolling keeps one Deployment named after the resource; blue-green one per template."""
    return md_name if strategy == "Rolling" else f"{md_name}-{template_hash}"


def stable_service_name(md_name: str) -> str:
    """The Service clients call."""
    return md_name


def preview_service_name(md_name: str) -> str:
    """The blue-green Service that reaches the candidate before promotion."""
    return f"{md_name}-preview"


def disruption_budget_name(md_name: str) -> str:
    """The PodDisruptionBudget over every version's serving pods."""
    return md_name


def config_map_name(md_name: str, template_hash: str) -> str:
    """The runtime config of one template; immutable, so a flip back finds it unchanged."""
    return f"{md_name}-config-{template_hash}"


def prefetch_pod_name(md_name: str, template_hash: str, node: str) -> str:
    """The pod that fetches `template_hash` onto `node` before a rollout starts its pods."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"{md_name[:200]}-prefetch-{template_hash}-{digest}"


def pod_selector(md_name: str) -> str:
    """Every version's serving pods, as a label selector string (status.selector)."""
    return f"{LABEL_MODEL_DEPLOYMENT}={md_name}"


def standard_labels(md_name: str, component: str = "model-server") -> dict[str, str]:
    """The app.kubernetes.io/* labels every child carries."""
    return {
        "app.kubernetes.io/name": "modeldeploy",
        "app.kubernetes.io/instance": md_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "modeldeploy-operator",
        "app.kubernetes.io/part-of": "modeldeploy",
        LABEL_MODEL_DEPLOYMENT: md_name,
    }
