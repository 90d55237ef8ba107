"""The one Kubernetes stand-in of the operator's unit tests.

It plays the API server for the calls `adapters.kube.Kube` makes (objects kept by kind and
name, label-selected lists, merge-patched status, Events recorded) and, on request, the
Deployment controller and kubelet (`roll_out`). Unit tests of the wiring only: the e2e
scenarios run the same code against a real control plane.
"""

from __future__ import annotations

import copy
from typing import Any

from modeldeploy_operator.adapters.kube import NotFoundError

Manifest = dict[str, Any]


def merge(target: Manifest, patch: Manifest) -> Manifest:
    """Apply a JSON merge patch to `target` in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKube:
    """Objects by (kind, name); every write recorded in `calls`, every Event in `events`."""

    def __init__(self, md: Manifest | None = None) -> None:
        self.md = md
        self.objects: dict[tuple[str, str], Manifest] = {}
        self.calls: list[tuple[str, ...]] = []
        self.events: list[tuple[str, str, str]] = []
        self.status_writes = 0
        self.pod_seq = 0
        # Raised by the next write of this (kind, name), then cleared (a refused apply).
        self.refuse: dict[tuple[str, str], Exception] = {}

    # -- the Kube surface ----------------------------------------------------------------
    def get_model_deployment(self, namespace: str, name: str) -> Manifest:
        self.calls.append(("get", "ModelDeployment", name))
        if self.md is None:
            raise NotFoundError("gone", 404)
        return copy.deepcopy(self.md)

    def patch_status(self, namespace: str, name: str, patch: Manifest) -> Manifest:
        assert self.md is not None
        self.calls.append(("patch_status", name))
        self.status_writes += 1
        self.md["status"] = merge(self.md.get("status") or {}, patch)
        return copy.deepcopy(self.md)

    def apply(self, manifest: Manifest) -> Manifest:
        key = (manifest["kind"], manifest["metadata"]["name"])
        if key in self.refuse:
            raise self.refuse.pop(key)
        self.calls.append(("apply", *key))
        old = self.objects.get(key)
        stored = copy.deepcopy(manifest)
        if manifest["kind"] == "Deployment":
            unchanged = old is not None and old["spec"] == manifest["spec"]
            stored["metadata"]["generation"] = (old or {}).get("metadata", {}).get(
                "generation", 0
            ) + (0 if unchanged else 1)
            stored["status"] = (old or {}).get("status", {})
        self.objects[key] = stored
        return stored

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(("scale", name, str(replicas)))
        dep = self.objects[("Deployment", name)]
        dep["spec"]["replicas"] = replicas
        dep["metadata"]["generation"] = dep["metadata"].get("generation", 0) + 1

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.calls.append(("delete", kind, name))
        return self.objects.pop((kind, name), None) is not None

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        self.calls.append(("get", kind, name))
        return copy.deepcopy(self.objects.get((kind, name)))

    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        self.calls.append(("list", kind))
        found = []
        for (k, _), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if k == kind and all(labels.get(a) == b for a, b in selector.items()):
                found.append(copy.deepcopy(obj))
        return found

    def list_nodes(self) -> list[Manifest]:
        self.calls.append(("list", "Node"))
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == "Node"]

    def list_labelled(self, kind: str, namespace: str) -> tuple[list[Manifest], int | None]:
        self.calls.append(("list_labelled", kind))
        if kind == "ModelDeployment":
            return ([copy.deepcopy(self.md)] if self.md is not None else []), None
        found = [
            copy.deepcopy(obj) for (k, _), obj in self.objects.items()
            if k == kind and "modeldeploy.dev/modeldeployment" in (
                obj["metadata"].get("labels") or {}
            )
        ]
        return found, None

    def post_event(self, owner: Any, type_: str, reason: str, message: str, now: str) -> None:
        self.calls.append(("post_event", reason))
        self.events.append((type_, reason, message))

    # -- the Deployment controller and kubelet, in one step ------------------------------
    def roll_out(self, name: str) -> None:
        """Make every pod of the Deployment's current template ready (and no others)."""
        dep = self.objects[("Deployment", name)]
        template = dep["spec"]["template"]
        replicas = dep["spec"]["replicas"]
        selector = dep["spec"]["selector"]["matchLabels"]
        for key in [k for k, o in self.objects.items() if k[0] == "Pod" and all(
                (o["metadata"]["labels"]).get(a) == b for a, b in selector.items())]:
            del self.objects[key]
        for _ in range(replicas):
            self.pod_seq += 1
            pod_name = f"{name}-pod{self.pod_seq}"
            self.objects[("Pod", pod_name)] = {
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "uid": pod_name,
                    "labels": dict(template["metadata"]["labels"]),
                    "creationTimestamp": f"2026-01-01T00:00:{self.pod_seq:02d}Z",
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {
                    "podIP": f"10.244.0.{self.pod_seq}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "serve", "restartCount": 0}],
                },
            }
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }
