"""The child objects of a ModelDeployment, built from its spec: pure functions, plain dicts.

Every object carries the standard `app.kubernetes.io/*` labels and a controller owner
reference, so deleting the ModelDeployment garbage-collects it. The handlers send these
dicts with server-side apply; nothing here talks to the cluster.

One pod template per template hash: the hash covers the model version and everything
that shapes the pod (runtime, validation, cache), never replicas or strategy, so scaling
does not start a rollout and a version change always does.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.schema import DEFAULT_GPU_RESOURCE
from modeldeploy_operator.api.spec import (
    API_VERSION,
    KIND,
    EnvVar,
    ModelDeploymentSpec,
    RuntimeSpec,
)
from modeldeploy_operator.planning import runtime_config
from modeldeploy_operator.planning.cache_volume import (
    RUNTIME_UID,
    cache_owner_containers,
    cache_volume,
)

Manifest = dict[str, Any]

CONFIG_DIR = "/etc/modeldeploy"
CONFIG_FILE = "runtime.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
TERMINATION_LOG = "/dev/termination-log"
HASH_LENGTH = 10
SERVICE_PORT = 80
PRE_STOP_SECONDS = 5
TERMINATION_GRACE_SECONDS = 30
ANNOTATION_CONFIG_HASH = f"{naming.GROUP}/config-hash"
# The credentials Secret keys, as boto3 reads them from the environment.
S3_SECRET_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),
)
_DEFAULT_IMAGE = RuntimeSpec.model_fields["image"].default


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the children."""

    name: str
    namespace: str
    uid: str


def effective_image(spec: ModelDeploymentSpec, default_image: str | None = None) -> str:
    """The runtime image: the spec's, or the operator-wide default when the spec kept ours."""
    if default_image and spec.runtime.image == _DEFAULT_IMAGE:
        return default_image
    return spec.runtime.image


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def template_hash(spec: ModelDeploymentSpec, default_image: str | None = None) -> str:
    """Short hash of what shapes a pod: version, runtime, validation, cache, stage deadlines
    (not replicas)."""
    shaping = spec.model_dump(
        mode="json", by_alias=True, include={"model", "runtime", "validation", "cache"}
    )
    shaping["runtime"]["image"] = effective_image(spec, default_image)
    _drop_unset_identity_fields(shaping)
    # How a rollout proceeds, not what a pod is: toggling it re-rolls nothing.
    shaping["cache"].pop("prefetch", None)
    if shaping["cache"].get("sizeLimit") is None:
        # Came after the first release: unset, it must leave existing hashes as they were.
        shaping["cache"].pop("sizeLimit", None)
    # Only when set, so upgrading the operator does not re-roll every existing pod.
    if deadlines := runtime_config.stage_deadlines(spec):
        shaping["stageDeadlineSeconds"] = deadlines
    _pod_fields_only_when_set(spec, shaping)
    return _digest(shaping)[:HASH_LENGTH]


def _pod_fields_only_when_set(spec: ModelDeploymentSpec, shaping: dict[str, Any]) -> None:
    """Hash the pod-placement fields only when they change the pod.

    They came after the first release: unset, they must leave the hash of an existing spec
    exactly as it was, or an operator upgrade would restart every serving pod.
    """
    runtime = shaping["runtime"]
    for env in runtime["env"]:
        if env.get("valueFrom") is None:
            env.pop("valueFrom", None)
    if not runtime.get("envFrom"):
        runtime.pop("envFrom", None)
    resources = runtime["resources"]
    # The name shapes the pod only when a GPU is requested under it.
    if not resources.get("gpu") or resources.get("gpuResourceName") == DEFAULT_GPU_RESOURCE:
        resources.pop("gpuResourceName", None)
    if pod := _pod_settings(spec):
        shaping["pod"] = pod


def _pod_settings(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """spec.pod's fields that are set, camelCase; {} when none is."""
    return spec.pod.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def _drop_unset_identity_fields(shaping: dict[str, Any]) -> None:
    """Fields added after the first release count only when set, so upgrading the operator
    does not re-roll every existing pod."""
    source = shaping["model"]["source"]
    groups = (
        (source.get("s3"), ("anonymous", "addressingStyle", "retryMode")),
        (source.get("huggingFace"), ("offline",)),
        (shaping["runtime"], ("serviceAccountName",)),
    )
    for part, keys in groups:
        for key in keys:
            if part is not None and part.get(key, 0) is None:
                del part[key]


def spec_snapshot(spec: ModelDeploymentSpec) -> str:
    """The spec as JSON, kept on the config map so a flip back can rebuild its pods."""
    return json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)


def owner_reference(owner: Owner) -> Manifest:
    """A controller owner reference to the ModelDeployment (garbage collection on delete)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def pod_labels(owner: Owner, spec: ModelDeploymentSpec, hash_: str) -> dict[str, str]:
    """Labels of the serving pods: standard, plus template hash and version."""
    return {
        **naming.standard_labels(owner.name),
        naming.LABEL_TEMPLATE_HASH: hash_,
        naming.LABEL_VERSION: spec.model.version,
    }


def config_map(owner: Owner, spec: ModelDeploymentSpec, hash_: str) -> Manifest:
    """The runtime config of one template; immutable, carrying the spec that made it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            **_metadata(
                owner,
                naming.config_map_name(owner.name, hash_),
                {
                    **naming.standard_labels(owner.name, "runtime-config"),
                    naming.LABEL_TEMPLATE_HASH: hash_,
                    naming.LABEL_VERSION: spec.model.version,
                },
            ),
            "annotations": {naming.ANNOTATION_SPEC_SNAPSHOT: spec_snapshot(spec)},
        },
        "immutable": True,
        "data": {CONFIG_FILE: runtime_config.to_json(runtime_config.build(spec))},
    }


def startup_timeout_seconds(spec: ModelDeploymentSpec) -> int:
    """How long a pod may take to fetch, load, warm up and validate before it is restarted.

    Unset, it is the rollout's own deadline: a pod slower than that fails the rollout anyway,
    and any shorter guess would restart big models in a loop.
    """
    return spec.runtime.startup_timeout_seconds or spec.progress_deadline_seconds


def _credential_env(spec: ModelDeploymentSpec) -> list[Manifest]:
    source = spec.model.source
    env: list[Manifest] = []
    if source.s3 is not None and source.s3.credentials_secret:
        for key, optional in S3_SECRET_KEYS:
            ref: Manifest = {"name": source.s3.credentials_secret, "key": key}
            if optional:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    hub = source.hugging_face
    if hub is not None:
        if hub.endpoint:
            env.append({"name": "HF_ENDPOINT", "value": hub.endpoint})
        if hub.token_secret is not None:
            env.append(
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": hub.token_secret.name, "key": hub.token_secret.key}
                    },
                }
            )
    return env


def _identity(spec: ModelDeploymentSpec) -> Manifest:
    """Who the pod runs as: no token at all unless a ServiceAccount is named, whose token
    (and IRSA / Pod Identity / workload identity webhooks keyed on it) the fetch needs."""
    account = spec.runtime.service_account_name
    if account is None:
        return {"automountServiceAccountToken": False}
    return {"serviceAccountName": account, "automountServiceAccountToken": True}


def _resources(spec: ModelDeploymentSpec, with_gpu: bool) -> Manifest:
    wanted = spec.runtime.resources
    requests = {k: v for k, v in wanted.requests.model_dump().items() if v is not None}
    limits: dict[str, Any] = {k: v for k, v in wanted.limits.model_dump().items() if v is not None}
    if with_gpu and wanted.gpu > 0:
        # Extended resources are requested through limits (requests default to them).
        limits[wanted.gpu_resource_name] = str(wanted.gpu)
    out: Manifest = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _env_var(var: EnvVar) -> Manifest:
    if var.value_from is not None:
        return {"name": var.name, "valueFrom": var.value_from}
    return {"name": var.name, "value": var.value}


def _env_from(spec: ModelDeploymentSpec) -> Manifest:
    # Absent rather than empty, so pods of specs without it render as before.
    return {"envFrom": list(spec.runtime.env_from)} if spec.runtime.env_from else {}


def pod_placement(spec: ModelDeploymentSpec) -> Manifest:
    """The pod-spec keys spec.pod sets (placement, identity); none when unset."""
    pod = spec.pod
    out: Manifest = {}
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = list(pod.tolerations)
    if pod.affinity:
        out["affinity"] = pod.affinity
    if pod.topology_spread_constraints:
        out["topologySpreadConstraints"] = list(pod.topology_spread_constraints)
    if pod.priority_class_name:
        out["priorityClassName"] = pod.priority_class_name
    if pod.runtime_class_name:
        out["runtimeClassName"] = pod.runtime_class_name
    if pod.image_pull_secrets:
        out["imagePullSecrets"] = list(pod.image_pull_secrets)
    return out


def _container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _http_probe(path: str, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": naming.PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def pod_template(
    owner: Owner, spec: ModelDeploymentSpec, hash_: str, default_image: str | None = None
) -> Manifest:
    """The serving pod: `fetch` fills the cache, `serve` loads, validates and serves."""
    image = effective_image(spec, default_image)
    runtime_args = ["--config", CONFIG_PATH, "--cache-root", spec.cache.path]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "cache", "mountPath": spec.cache.path},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    user_env = [_env_var(e) for e in spec.runtime.env]
    # Probing every second: readiness is noticed within a second of the model being ready.
    startup_period = 1
    fetch = {
        "name": naming.FETCH_CONTAINER,
        "image": image,
        "command": ["modeldeploy-runtime", "fetch", *runtime_args],
        "env": [*_credential_env(spec), *user_env],
        **_env_from(spec),
        "resources": _resources(spec, with_gpu=False),
        "volumeMounts": mounts,
        "securityContext": _container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    serve = {
        "name": naming.SERVE_CONTAINER,
        "image": image,
        "command": [
            "modeldeploy-runtime",
            "serve",
            *runtime_args,
            "--port",
            str(spec.runtime.port),
        ],
        "ports": [
            {"name": naming.PORT_NAME, "containerPort": spec.runtime.port, "protocol": "TCP"}
        ],
        "env": [
            {"name": "MODELDEPLOY_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            *user_env,
        ],
        **_env_from(spec),
        "resources": _resources(spec, with_gpu=True),
        "volumeMounts": mounts,
        "securityContext": _container_security(),
        # Startup ends at the first ready answer; until then liveness cannot kill a pod that
        # is busy loading, and the startup budget bounds how long loading may take.
        "startupProbe": _http_probe(
            "/readyz", startup_period, math.ceil(startup_timeout_seconds(spec) / startup_period)
        ),
        "readinessProbe": _http_probe("/readyz", 1, 2),
        # Keep serving while the endpoint removal reaches every client and proxy: SIGTERM
        # only after this, so a scale-down or rollout drops no request.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "livenessProbe": _http_probe("/healthz", 10, 3),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    config_text = config_map(owner, spec, hash_)["data"][CONFIG_FILE]
    return {
        "metadata": {
            # The operator's own labels and annotation win (pod.labels refuses them anyway).
            "labels": {**spec.pod.labels, **pod_labels(owner, spec, hash_)},
            "annotations": {
                **spec.pod.annotations,
                ANNOTATION_CONFIG_HASH: _digest(config_text)[:16],
            },
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUNTIME_UID,
                "runAsGroup": RUNTIME_UID,
                "fsGroup": RUNTIME_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **_identity(spec),
            "terminationGracePeriodSeconds": (
                spec.pod.termination_grace_period_seconds or TERMINATION_GRACE_SECONDS
            ),
            **pod_placement(spec),
            "initContainers": [*cache_owner_containers(spec, image), fetch],
            "containers": [serve],
            "volumes": [
                {
                    "name": "config",
                    "configMap": {"name": naming.config_map_name(owner.name, hash_)},
                },
                cache_volume(spec),
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def deployment_selector(owner: Owner, spec: ModelDeploymentSpec, hash_: str) -> dict[str, str]:
    """Rolling selects every pod of the resource (the selector is immutable across versions);
    blue-green selects one template, so versions never adopt each other's pods."""
    selector = {naming.LABEL_MODEL_DEPLOYMENT: owner.name}
    if spec.strategy.type == "BlueGreen":
        selector[naming.LABEL_TEMPLATE_HASH] = hash_
    return selector


def deployment(
    owner: Owner,
    name: str,
    spec: ModelDeploymentSpec,
    hash_: str,
    replicas: int,
    default_image: str | None = None,
) -> Manifest:
    """The Deployment `name` (the planner's choice) running template `hash_`."""
    strategy = spec.strategy
    rolling_update: Manifest = {"maxSurge": 1, "maxUnavailable": 0}
    if strategy.type == "Rolling":
        settings = strategy.rolling_settings
        rolling_update = {
            "maxSurge": settings.max_surge,
            "maxUnavailable": settings.max_unavailable,
        }
    labels = {
        **naming.standard_labels(owner.name),
        naming.LABEL_TEMPLATE_HASH: hash_,
        naming.LABEL_VERSION: spec.model.version,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, name, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": deployment_selector(owner, spec, hash_)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update},
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": pod_template(owner, spec, hash_, default_image),
        },
    }


def disruption_budget(
    owner: Owner, name: str, min_available: int | str | None, max_unavailable: int | str | None
) -> Manifest:
    """A PodDisruptionBudget over the serving pods of every version (not one template's:
    during a blue-green rollout both versions count toward what may be evicted)."""
    bound: Manifest = (
        {"maxUnavailable": max_unavailable}
        if max_unavailable is not None
        else {"minAvailable": min_available}
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, name, naming.standard_labels(owner.name, "disruption-budget")),
        "spec": {
            "selector": {"matchLabels": {naming.LABEL_MODEL_DEPLOYMENT: owner.name}},
            **bound,
        },
    }


def service(owner: Owner, name: str, template_hash: str | None) -> Manifest:
    """A ClusterIP Service on port 80 selecting pods of `template_hash` (None: every version).

    It targets the serving port by name, never by number: the pods it selects may be of
    a version whose runtime.port differs from today's spec (a flip back, a blue-green
    candidate), and each pod knows its own.
    """
    selector = {naming.LABEL_MODEL_DEPLOYMENT: owner.name}
    if template_hash is not None:
        selector[naming.LABEL_TEMPLATE_HASH] = template_hash
    component = "preview" if name == naming.preview_service_name(owner.name) else "service"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name, naming.standard_labels(owner.name, component)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {
                    "name": naming.PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": naming.PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
