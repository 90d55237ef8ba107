"""The children as last seen on the watch streams: reconciles read here, not from lists.

The kopf handlers feed every watch event of the children (Deployments, Pods, Services with
the ModelDeployment label) into one `ChildStore`; a reconcile reads its world from it and
makes no list call. A missed event cannot leave it wrong for long: as an informer relists,
`relist` reads each kind once per namespace (one list call for all resources, not one per
resource) and `replace`s what the store holds, naming the resources whose objects changed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from modeldeploy_operator.adapters.kube import Kube, KubeWrites
from modeldeploy_operator.api import naming

Manifest = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
MODEL_DEPLOYMENT = "ModelDeployment"
# What a resync relists: the resources themselves and every child kind a reconcile reads.
RELISTED_KINDS = (MODEL_DEPLOYMENT, "Deployment", "Pod", "Service", "PodDisruptionBudget")


def _version(obj: Mapping[str, Any]) -> int | None:
    # resourceVersions are opaque by contract; etcd's are integers, and comparing them only
    # keeps an older list result from overwriting a newer watch event.
    value = obj.get("metadata", {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# Bookkeeping of other clients that no decision reads: managedFields alone is a third of a
# Deployment, and `kubectl apply` keeps a whole copy of the spec in an annotation. With
# 1000 resources the store would hold tens of megabytes of it.
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _kept(obj: Mapping[str, Any]) -> Manifest:
    """A private copy of `obj` without what no reconcile reads."""
    kept = copy.deepcopy(dict(obj))
    meta = kept.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for name in _UNREAD_ANNOTATIONS:
                annotations.pop(name, None)
    return kept


def _owner(kind: str, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    if kind == MODEL_DEPLOYMENT:
        return str(meta.get("name", ""))
    return str((meta.get("labels") or {}).get(naming.LABEL_MODEL_DEPLOYMENT, ""))


def _matches(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


class ChildStore:
    """Thread-safe: kopf's event loop writes, reconcile threads read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, Manifest] = {}

    def _newer(self, key: Key, obj: Manifest) -> bool:
        known = self._objects.get(key)
        if known is None:
            return True
        old, new = _version(known), _version(obj)
        return old is None or new is None or new >= old

    def observe(self, kind: str, obj: Mapping[str, Any], deleted: bool = False) -> bool:
        """One watch event: the object as it is now, or gone. Whether it is news: a watch
        that reconnects lists every object again, and an unchanged copy must wake nobody."""
        meta = obj.get("metadata", {})
        key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            if deleted:
                return self._objects.pop(key, None) is not None
            known = self._objects.get(key)
            if known is not None and _version(known) is not None and (
                _version(known) == _version(obj)
            ):
                return False
            if not self._newer(key, dict(obj)):
                return False
            self._objects[key] = _kept(obj)
            return True

    def seed(
        self, kind: str, namespace: str, selector: Mapping[str, str], items: list[Manifest]
    ) -> None:
        """A fresh list of `kind` matching `selector`: it replaces what the store held."""
        listed = {(kind, namespace, str(i["metadata"]["name"])): i for i in items}
        with self._lock:
            for key in [
                k for k, o in self._objects.items()
                if k[0] == kind and k[1] == namespace and _matches(o, selector)
            ]:
                if key not in listed:
                    del self._objects[key]
            for key, obj in listed.items():
                if self._newer(key, obj):
                    self._objects[key] = _kept(obj)

    def replace(
        self, kind: str, namespace: str, items: list[Manifest], listed_at: int | None
    ) -> set[str]:
        """Every object of `kind` in `namespace` as one list read at resourceVersion
        `listed_at` saw them; the names of the ModelDeployments whose objects changed.

        An object the store got from a watch event newer than the list is kept: it was
        created or changed after the list was read, not missed by the watch.
        """
        listed = {(kind, namespace, str(i["metadata"]["name"])): i for i in items}
        changed: set[str] = set()
        with self._lock:
            for key, known in list(self._objects.items()):
                if key[0] != kind or key[1] != namespace or key in listed:
                    continue
                version = _version(known)
                if listed_at is None or version is None or version <= listed_at:
                    del self._objects[key]
                    changed.add(_owner(kind, known))
            for key, obj in listed.items():
                held = self._objects.get(key)
                if held is not None and _version(held) == _version(obj):
                    continue
                if self._newer(key, obj):
                    self._objects[key] = _kept(obj)
                    changed.add(_owner(kind, obj))
        changed.discard("")
        return changed

    def list(self, kind: str, namespace: str, selector: Mapping[str, str]) -> list[Manifest]:
        """Copies of the objects of `kind` in `namespace` whose labels match `selector`."""
        with self._lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self._objects.items())
                if k == kind and ns == namespace and _matches(o, selector)
            ]

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        """A copy of one object, or None."""
        with self._lock:
            obj = self._objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None


def relist(kube: Kube, store: ChildStore, namespace: str) -> set[str]:
    """Read every relisted kind of `namespace` from the API server into `store`; the
    ModelDeployments whose objects the watches had not delivered (to be reconciled)."""
    changed: set[str] = set()
    for kind in RELISTED_KINDS:
        items, listed_at = kube.list_labelled(kind, namespace)
        changed |= store.replace(kind, namespace, items, listed_at)
    return changed


class WriteThrough:
    """The Kube writes, with what the API server answered fed into the store at once.

    A pass that follows a write within a second must see it, not wait for the watch event
    (which the store then takes only if it is newer).
    """

    def __init__(self, kube: KubeWrites, store: ChildStore) -> None:
        self._kube = kube
        self._store = store

    def apply(self, manifest: Manifest) -> Manifest:
        stored = self._kube.apply(manifest)
        if stored and stored.get("kind") in ("Deployment", "Service"):
            self._store.observe(str(stored["kind"]), stored)
        return stored

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._kube.scale(namespace, name, replicas)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        gone = self._kube.delete(kind, namespace, name)
        self._store.observe(kind, {"metadata": {"namespace": namespace, "name": name}},
                            deleted=True)
        return gone

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        return self._kube.get(kind, namespace, name)

    def list(self, kind: str, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return self._kube.list(kind, namespace, selector)

    def post_event(
        self, owner: Manifest, type_: str, reason: str, message: str, now: str
    ) -> None:
        self._kube.post_event(owner, type_, reason, message, now)
