"""The few Kubernetes API calls the cache collector makes, from inside its pod.

The runtime image carries no Kubernetes client library; these three calls need only the
standard library and the pod's service-account token (re-read on every call: it rotates).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from modeldeploy_runtime.errors import RuntimeFailure

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MODEL_DEPLOYMENTS = "/apis/modeldeploy.dev/v1alpha1/modeldeployments"


class KubeApiError(RuntimeFailure):
    """A call to the Kubernetes API failed (the collector logs it and tries next pass)."""


class InCluster:
    """The API server named by KUBERNETES_SERVICE_HOST/PORT, as this pod's service account."""

    def __init__(self, env: dict[str, str] | None = None,
                 account: Path = SERVICE_ACCOUNT, namespace: str | None = None) -> None:
        env = dict(os.environ) if env is None else env
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubeApiError(
                "KUBERNETES_SERVICE_HOST/PORT are not set: `cache gc` talks to the API server "
                "from inside a pod; outside one, pass --references FILE")
        self.base = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
        self.account = account
        # A claim's collector sees only its namespace (a PVC is namespaced; so is its Role).
        self.namespace = namespace
        self.context = ssl.create_default_context(cafile=str(account / "ca.crt"))

    def _call(self, method: str, path: str, body: object | None = None,
              content_type: str = "application/json") -> Any:
        token = (self.account / "token").read_text(encoding="utf-8").strip()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type,
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode("utf-8", "replace")
            raise KubeApiError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise KubeApiError(f"{method} {path}: {error}") from None

    def list_model_deployments(self) -> list[dict[str, Any]]:
        """Every ModelDeployment in the cluster, or in `namespace` when one was given."""
        path = MODEL_DEPLOYMENTS if self.namespace is None else (
            f"/apis/modeldeploy.dev/v1alpha1/namespaces/{self.namespace}/modeldeployments")
        return list(self._call("GET", path).get("items", []))

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Merge-patch annotations of one ModelDeployment (None removes a key)."""
        self._call("PATCH", f"/apis/modeldeploy.dev/v1alpha1/namespaces/{namespace}/"
                   f"modeldeployments/{name}", {"metadata": {"annotations": annotations}},
                   "application/merge-patch+json")

    def post_event(self, md: dict[str, Any], reason: str, message: str, node: str,
                   stamp: str) -> None:
        """A Normal Event on `md`, as the collector on `node`."""
        meta = md["metadata"]
        self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.cache-", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": md.get("apiVersion", "modeldeploy.dev/v1alpha1"),
                               "kind": "ModelDeployment", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "reason": reason, "message": message, "type": "Normal",
            "source": {"component": "modeldeploy-cache-gc", "host": node},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        })
