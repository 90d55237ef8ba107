"""The thin Kubernetes API adapter: plain dicts in and out, our own error classes.

Writes are server-side apply with the field manager `modeldeploy-operator` (idempotent:
applying the same object twice changes nothing) or merge patches of one field. Every
call the operator makes to the API server goes through `Kube._call`, so the RBAC rules
of the chart can be checked against `API_CALLS`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modeldeploy_operator import metrics
from modeldeploy_operator.api.errors import OperatorError, PermanentError, TransientError
from modeldeploy_operator.api.naming import LABEL_MODEL_DEPLOYMENT
from modeldeploy_operator.api.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

FIELD_MANAGER = "modeldeploy-operator"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
Manifest = dict[str, Any]
# A list call's items and the resourceVersion it was read at (None: not an integer).
Listed = tuple[list[Manifest], int | None]
Manifests = list[Manifest]
T = TypeVar("T")

# (verb, api group, resource) of every call below; the chart's Role must grant them.
API_CALLS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("get", GROUP, PLURAL),
        ("list", GROUP, PLURAL),
        ("patch", GROUP, f"{PLURAL}/status"),
        ("list", "apps", "deployments"),
        ("patch", "apps", "deployments"),
        ("create", "apps", "deployments"),
        ("delete", "apps", "deployments"),
        ("list", "", "pods"),
        # Prefetch pods (spec.cache.prefetch): created by server-side apply, then deleted.
        ("patch", "", "pods"),
        ("create", "", "pods"),
        ("delete", "", "pods"),
        ("list", "", "services"),
        ("patch", "", "services"),
        ("create", "", "services"),
        ("delete", "", "services"),
        ("get", "", "configmaps"),
        ("list", "", "configmaps"),
        ("patch", "", "configmaps"),
        ("create", "", "configmaps"),
        ("delete", "", "configmaps"),
        ("create", "", "events"),
        ("list", "policy", "poddisruptionbudgets"),
        ("patch", "policy", "poddisruptionbudgets"),
        ("create", "policy", "poddisruptionbudgets"),
        ("delete", "policy", "poddisruptionbudgets"),
    }
)

# Cluster-scoped calls; the chart's ClusterRole must grant them whatever the watched
# namespaces. Nodes: the prefetch step's targets when spec.pod selects a node pool.
CLUSTER_API_CALLS: frozenset[tuple[str, str, str]] = frozenset({("list", "", "nodes")})

_RESOURCES = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Pod": ("/api/v1", "pods"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
}


class KubeError(OperatorError):
    """A Kubernetes API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class TransientKubeError(KubeError, TransientError):
    """Worth retrying later: conflicts, throttling, server errors, timeouts."""


class PermanentKubeError(KubeError, PermanentError):
    """Retrying the same call will fail again: refused, forbidden, invalid."""


class NotFoundError(PermanentKubeError):
    """The object does not exist."""


def _error_from(exc: ApiException, what: str) -> KubeError:
    status = int(exc.status or 0)
    reason = ""
    try:
        body = json.loads(exc.body or "{}")
        reason = str(body.get("message", ""))
    except (ValueError, AttributeError):
        reason = str(exc.reason or "")
    # Remote bodies can be long (whole objects echoed back): keep the log line short.
    message = f"{what}: HTTP {status} {reason[:300]}".rstrip()
    if status == 404:
        return NotFoundError(message, status)
    if status in (409, 429) or status >= 500 or status == 0:
        return TransientKubeError(message, status)
    return PermanentKubeError(message, status)


def request_kind(method: str, path: str, content_type: str | None) -> tuple[str, str]:
    """(verb, resource) of a request, as the API server authorizes it: for metrics."""
    parts = path.split("?")[0].strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] if rest else "unknown"
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    named = len(rest) > 1
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "DELETE": "delete",
        "PATCH": "apply" if content_type == APPLY else "patch",
    }.get(method, method.lower())
    return verb, resource


def retrying(call: Callable[[], T], attempts: int = 4, delay: float = 0.2) -> T:
    """Run `call`, retrying transient failures (conflicts included) with a short backoff."""
    for attempt in range(attempts):
        try:
            return call()
        except TransientKubeError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay * 2**attempt)
    raise AssertionError("unreachable")


def load_client_config() -> client.ApiClient:
    """An API client from the in-cluster service account, else the kubeconfig."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubeWrites(Protocol):
    """The calls that write children and Events (what `apply` uses; a fake in tests)."""

    def apply(self, manifest: Manifest) -> Manifest: ...
    def scale(self, namespace: str, name: str, replicas: int) -> None: ...
    def delete(self, kind: str, namespace: str, name: str) -> bool: ...
    def get(self, kind: str, namespace: str, name: str) -> Manifest | None: ...
    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[Manifest]: ...
    def post_event(
        self, owner: Manifest, type_: str, reason: str, message: str, now: str
    ) -> None: ...


class Kube:
    """The API calls the operator makes, each one line of intent."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        what: str = "",
    ) -> Manifest:
        metrics.count_api_request(*request_kind(method, path, content_type))
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        try:
            request = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=30)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise _error_from(exc, what or f"{method} {path}") from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, reset, timeouts
            raise TransientKubeError(f"{what or path}: {exc}") from exc
        if not 200 <= response.status <= 299:
            error = ApiException(status=response.status, reason=response.reason)
            error.body = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise _error_from(error, what or f"{method} {path}")
        return json.loads(data) if data else {}

    # -- the ModelDeployment ------------------------------------------------------------

    def get_model_deployment(self, namespace: str, name: str) -> Manifest:
        """The ModelDeployment as stored."""
        return retrying(
            lambda: self._call(
                "GET",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
                what=f"get ModelDeployment {namespace}/{name}",
            )
        )

    def patch_status(self, namespace: str, name: str, status: Manifest) -> Manifest:
        """Merge-patch the status subresource (spec untouched); the object as stored now."""
        return retrying(
            lambda: self._call(
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
                body={"status": status},
                content_type=MERGE,
                query={"fieldManager": FIELD_MANAGER},
                what=f"patch status of ModelDeployment {namespace}/{name}",
            )
        )

    # -- children -----------------------------------------------------------------------

    def _path(self, kind: str, namespace: str, name: str | None = None) -> str:
        prefix, plural = _RESOURCES[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def apply(self, manifest: Manifest) -> Manifest:
        """Create or update `manifest` by server-side apply (we own the fields we set)."""
        kind = manifest["kind"]
        meta = manifest["metadata"]
        return retrying(
            lambda: self._call(
                "PATCH",
                self._path(kind, meta["namespace"], meta["name"]),
                body=manifest,
                content_type=APPLY,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                what=f"apply {kind} {meta['namespace']}/{meta['name']}",
            )
        )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replica count (merge patch of spec.replicas)."""
        retrying(
            lambda: self._call(
                "PATCH",
                self._path("Deployment", namespace, name),
                body={"spec": {"replicas": replicas}},
                content_type=MERGE,
                query={"fieldManager": FIELD_MANAGER},
                what=f"scale Deployment {namespace}/{name} to {replicas}",
            )
        )

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete an object (its dependents in the background); False when it was gone."""
        try:
            retrying(
                lambda: self._call(
                    "DELETE",
                    self._path(kind, namespace, name),
                    body={"propagationPolicy": "Background"},
                    what=f"delete {kind} {namespace}/{name}",
                )
            )
        except NotFoundError:
            return False
        return True

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        """One child object, or None when it does not exist."""
        try:
            return retrying(
                lambda: self._call(
                    "GET", self._path(kind, namespace, name), what=f"get {kind} {namespace}/{name}"
                )
            )
        except NotFoundError:
            return None

    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        """Objects of `kind` matching every label of `selector`."""
        path = self._path(kind, namespace)
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        result = retrying(
            lambda: self._call(
                "GET",
                path,
                query={"labelSelector": label_selector},
                what=f"list {kind} in {namespace} ({label_selector})",
            )
        )
        items: list[Manifest] = result.get("items", [])
        return items

    def list_nodes(self) -> Manifests:
        """Every Node of the cluster."""
        result = retrying(lambda: self._call("GET", "/api/v1/nodes", what="list nodes"))
        items: Manifests = result.get("items", [])
        return items

    def list_labelled(self, kind: str, namespace: str) -> Listed:
        """Every ModelDeployment, or every `kind` object carrying the ModelDeployment label,
        in `namespace`, with the list's resourceVersion (None when not an integer)."""
        if kind == "ModelDeployment":
            path, query = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", {}
        else:
            path = self._path(kind, namespace)
            query = {"labelSelector": LABEL_MODEL_DEPLOYMENT}
        result = retrying(
            lambda: self._call("GET", path, query=query, what=f"list {kind} in {namespace}")
        )
        version = result.get("metadata", {}).get("resourceVersion")
        try:
            listed_at = int(version) if version is not None else None
        except (TypeError, ValueError):
            listed_at = None
        return result.get("items", []), listed_at

    # -- events -------------------------------------------------------------------------

    def post_event(
        self, owner: Manifest, type_: str, reason: str, message: str, now: str
    ) -> None:
        """Post a core/v1 Event about the ModelDeployment (what `kubectl describe` shows)."""
        meta = owner["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": owner.get("kind", "ModelDeployment"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call(
                "POST",
                f"/api/v1/namespaces/{meta['namespace']}/events",
                body=body,
                what=f"post event {reason} on {meta['namespace']}/{meta['name']}",
            )
        except KubeError as exc:
            # An event lost is a story shortened, never a reason to fail the reconcile.
            log.warning("could not post event: %s", exc)
