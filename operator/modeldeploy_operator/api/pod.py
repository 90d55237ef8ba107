"""`spec.pod` and `spec.disruption`: where serving pods run and how they may be disrupted.

The Kubernetes sub-objects (tolerations, affinity, ...) are kept as the plain dicts the pod
spec takes, but their CRD schema is Kubernetes' own, extracted from its OpenAPI spec into
`k8s_schemas.json` (`k8sgen`): the API server refuses a malformed toleration at
`kubectl apply` with the field named, exactly as it would on a Deployment.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.config import JsonDict

from modeldeploy_operator.api import k8sgen, naming
from modeldeploy_operator.api.rollout import IntOrPercent
from modeldeploy_operator.api.schema import DNS_SUBDOMAIN, ApiModel, cel

__all__ = [
    "K8S_TYPES",
    "RESERVED_LABELS",
    "DisruptionSpec",
    "EnvFromSource",
    "EnvVarSource",
    "PodSpec",
    "k8s_schema",
]

_SCHEMAS = Path(__file__).with_name("k8s_schemas.json")
# The Kubernetes types spec.pod and the runtime's env embed.
K8S_TYPES = tuple(k8sgen.DEFINITIONS)
# The pod labels the operator sets itself: Services, selectors and the planner rely on them.
RESERVED_LABELS = tuple(naming.standard_labels("x"))
RESERVED_PREFIX = f"{naming.GROUP}/"


@cache
def _definitions() -> dict[str, JsonDict]:
    definitions: dict[str, JsonDict] = json.loads(_SCHEMAS.read_text())["definitions"]
    return definitions


def k8s_schema(name: str) -> JsonDict:
    """Kubernetes' structural schema of `name` (a key of `k8sgen.DEFINITIONS`)."""
    return dict(_definitions()[name])


# Plain dicts to pydantic (passed to the pod as written), Kubernetes' schemas in the CRD.
Toleration = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("Toleration"))]
Affinity = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("Affinity"))]
TopologySpreadConstraint = Annotated[
    dict[str, Any], WithJsonSchema(k8s_schema("TopologySpreadConstraint"))
]
LocalObjectReference = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("LocalObjectReference"))]
EnvVarSource = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("EnvVarSource"))]
EnvFromSource = Annotated[dict[str, Any], WithJsonSchema(k8s_schema("EnvFromSource"))]

_LABEL_VALUE = Annotated[str, Field(max_length=63)]
_ANNOTATION_VALUE = Annotated[str, Field(max_length=65536)]


def _reserved_label_rule() -> JsonDict:
    listed = ", ".join(f"'{key}'" for key in RESERVED_LABELS)
    return cel(
        f"self.all(k, !k.startsWith('{RESERVED_PREFIX}') && !(k in [{listed}]))",
        f"pod.labels may not set the operator's own labels ({RESERVED_PREFIX}*, "
        "app.kubernetes.io/name, instance, component, managed-by, part-of)",
    )


class PodSpec(ApiModel):
    """Where serving pods run and what they carry: the pod-level settings of every version."""

    node_selector: Annotated[
        dict[str, _LABEL_VALUE],
        Field(description="Node labels a node must have to run the pods (e.g. a GPU pool's)."),
    ] = {}
    tolerations: Annotated[
        list[Toleration],
        Field(description="Taints the pods tolerate (e.g. a GPU pool's).", max_length=64),
    ] = []
    affinity: Annotated[
        Affinity | None, Field(description="Node and pod (anti-)affinity rules.")
    ] = None
    topology_spread_constraints: Annotated[
        list[TopologySpreadConstraint],
        Field(
            description=(
                "How pods spread over zones or nodes; select them with labelSelector "
                "modeldeploy.dev/modeldeployment or matchLabelKeys "
                "[modeldeploy.dev/template-hash]."
            ),
            max_length=16,
        ),
    ] = []
    priority_class_name: Annotated[
        str | None,
        Field(description="PriorityClass of the pods.", pattern=DNS_SUBDOMAIN, max_length=253),
    ] = None
    runtime_class_name: Annotated[
        str | None,
        Field(
            description="RuntimeClass of the pods (e.g. nvidia).",
            pattern=DNS_SUBDOMAIN,
            max_length=253,
        ),
    ] = None
    image_pull_secrets: Annotated[
        list[LocalObjectReference],
        Field(description="Secrets to pull the runtime image from a private registry.",
              max_length=16),
    ] = []
    labels: Annotated[
        dict[str, _LABEL_VALUE],
        Field(
            description="Extra labels on the pods (not the operator's own).",
            json_schema_extra={"x-kubernetes-validations": [_reserved_label_rule()]},
        ),
    ] = {}
    annotations: Annotated[
        dict[str, _ANNOTATION_VALUE],
        Field(description="Extra annotations on the pods (scraping, mesh injection, ...)."),
    ] = {}
    termination_grace_period_seconds: Annotated[
        int | None,
        Field(
            description=(
                "Seconds a pod may take to stop; the default 30 covers the 5-second preStop "
                "wait and in-flight requests."
            ),
            ge=10,
            le=3600,
        ),
    ] = None

    @model_validator(mode="after")
    def _own_labels_kept(self) -> PodSpec:
        taken = [k for k in self.labels if k.startswith(RESERVED_PREFIX) or k in RESERVED_LABELS]
        if taken:
            raise ValueError(
                f"pod.labels: {', '.join(sorted(taken))} are set by the operator (selectors and "
                "Services rely on them); remove them or choose another key"
            )
        return self


class DisruptionSpec(ApiModel):
    """The PodDisruptionBudget over every version's serving pods (node drains, evictions)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.minAvailable) && has(self.maxUnavailable))",
                    "set minAvailable or maxUnavailable, not both",
                )
            ]
        }
    )

    min_available: Annotated[
        IntOrPercent | None,
        Field(description="Pods that must stay available during a voluntary disruption."),
    ] = None
    max_unavailable: Annotated[
        IntOrPercent | None,
        Field(description="Pods that may be unavailable during a voluntary disruption."),
    ] = None

    @model_validator(mode="after")
    def _one_bound(self) -> DisruptionSpec:
        if self.min_available is not None and self.max_unavailable is not None:
            raise ValueError(
                f"disruption: minAvailable ({self.min_available}) and maxUnavailable "
                f"({self.max_unavailable}) are both set; keep one"
            )
        return self
