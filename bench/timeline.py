"""What the API server said, and when, during one upgrade: watch streams of the
ModelDeployment, its Deployments, Pods and Services, each event stamped on arrival
(monotonic clock; watch delivery on loopback is milliseconds, where the objects' own
timestamps have one-second resolution), folded into the steps of a blue-green upgrade."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modeldeploy_e2e import workload
from modeldeploy_e2e.kube import KubeClient

Obj = dict[str, Any]
VERSION_LABEL = "modeldeploy.dev/version"
STEPS = ("spec applied", "candidate Deployment created", "pod created", "pod scheduled",
         "fetch done", "runtime ready", "Service switched", "first answer by the new version")
# Steps whose time is the operator's own: noticing the spec change; noticing readiness,
# validating through the preview and switching the Service.
OPERATOR_STEPS = (("spec applied", "candidate Deployment created"),
                  ("runtime ready", "Service switched"))


@dataclass(frozen=True)
class Seen:
    at: float
    kind: str
    obj: Obj


def _labels(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _condition(pod: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def _inits_done(pod: Obj) -> bool:
    inits = pod.get("status", {}).get("initContainerStatuses") or []
    return bool(inits) and all(
        (s.get("state", {}).get("terminated") or {}).get("exitCode") == 0 for s in inits)


class Timeline:
    """Watches `namespace` from construction on (daemon threads)."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        paths = {
            "ModelDeployment": workload.md_path(namespace),
            "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments",
            "Pod": f"/api/v1/namespaces/{namespace}/pods",
            "Service": f"/api/v1/namespaces/{namespace}/services",
        }
        for kind, path in paths.items():
            threading.Thread(target=client.watch, args=(path, self._recorder(kind)),
                             daemon=True, name=f"watch {kind}").start()

    def _recorder(self, kind: str) -> Callable[[str, Obj], None]:
        def record(type_: str, obj: Obj) -> None:
            if type_ in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._seen.append(Seen(time.monotonic(), kind, obj))
        return record

    def first(self, kind: str, after: float, match: Callable[[Obj], bool]) -> float | None:
        """When the first `kind` object matching `match` arrived after `after`."""
        with self._lock:
            return next((s.at for s in self._seen
                         if s.kind == kind and s.at >= after and match(s.obj)), None)

    def steps(self, name: str, version: str, started: float, answered: float) -> dict[str, float]:
        """Each step of the upgrade to `version` (seconds since `started`, the apply)."""
        def ours(obj: Obj) -> bool:
            return _labels(obj).get(VERSION_LABEL) == version

        candidate_labels: dict[str, str] = {}

        def candidate(obj: Obj) -> bool:
            if not ours(obj):
                return False
            labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
            candidate_labels.update(labels or {})
            return True

        def switched(obj: Obj) -> bool:
            selector = obj.get("spec", {}).get("selector") or {}
            return (obj.get("metadata", {}).get("name") == name and bool(candidate_labels)
                    and all(candidate_labels.get(k) == v for k, v in selector.items()))

        times = {
            "spec applied": self.first(
                "ModelDeployment", started,
                lambda o: o.get("spec", {}).get("model", {}).get("version") == version),
            "candidate Deployment created": self.first("Deployment", started, candidate),
            "pod created": self.first("Pod", started, ours),
            "pod scheduled": self.first(
                "Pod", started, lambda o: ours(o) and _condition(o, "PodScheduled")),
            "fetch done": self.first("Pod", started, lambda o: ours(o) and _inits_done(o)),
            "runtime ready": self.first(
                "Pod", started, lambda o: ours(o) and _condition(o, "Ready")),
            "Service switched": self.first("Service", started, switched),
            "first answer by the new version": answered,
        }
        return {step: at - started for step, at in times.items() if at is not None}
