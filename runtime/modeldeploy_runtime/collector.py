"""`modeldeploy-runtime cache gc`: one cache's collector (the chart installs a DaemonSet for
hostPath caches, one per node, and a Deployment per listed PVC cache, shared by every node).

Each pass: read every ModelDeployment's published references (`status.cache.references`),
union them into the node's reference set and write it under the cache root (where a fetch
reads it to keep `cache.sizeLimit`), remove every version nothing references and no pod
has open, post an Event naming what went and the bytes freed, and report what the node
still holds in an annotation of each ModelDeployment, which the operator folds into
`status.cache.versions`. Deciding what a ModelDeployment keeps is the operator's job; this
module only unions and acts.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from modeldeploy_contract.cache import (
    CacheReference,
    NodeInventory,
    ReferenceSet,
    inventory_annotation_key,
)
from pydantic import ValidationError

from modeldeploy_runtime import eviction

log = logging.getLogger("modeldeploy.runtime")

SHARED_VOLUMES = ("hostPath", "persistentVolumeClaim")
Manifest = dict[str, Any]


class Api(Protocol):
    """The calls a pass makes (kubeapi.InCluster, or a test double)."""

    def list_model_deployments(self) -> list[Manifest]: ...

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None: ...

    def post_event(self, md: Manifest, reason: str, message: str, node: str,
                   stamp: str) -> None: ...


@dataclass(frozen=True)
class PassResult:
    """What one pass did."""

    removed: list[eviction.Removed]
    kept: int
    annotated: int

    @property
    def freed(self) -> int:
        """Bytes the pass freed."""
        return sum(r.bytes for r in self.removed)


# -- deciding (pure) --------------------------------------------------------------------


def _shared(md: Manifest) -> bool:
    cache = (md.get("spec") or {}).get("cache") or {}
    return cache.get("volume", "emptyDir") in SHARED_VOLUMES


def _model_name(md: Manifest) -> str | None:
    name = ((md.get("spec") or {}).get("model") or {}).get("name")
    return str(name) if name else None


def reference_set(mds: Iterable[Manifest]) -> ReferenceSet:
    """The union of every shared-cache ModelDeployment's published references.

    One that published none yet (just created, or an operator older than this collector)
    keeps every version of its model: the collector never guesses a reference rule.
    """
    pairs: set[tuple[str, str]] = set()
    guarded: set[str] = set()
    for md in mds:
        if not _shared(md):
            continue
        published = ((md.get("status") or {}).get("cache") or {}).get("references")
        try:
            refs = None if published is None else [
                CacheReference.model_validate(r) for r in published]
        except ValidationError:
            refs = None
        if refs is None:
            if name := _model_name(md):
                guarded.add(name)
            continue
        pairs.update((r.name, r.version) for r in refs)
    return ReferenceSet(references=sorted(pairs), guarded_names=sorted(guarded))


@dataclass(frozen=True)
class Scope:
    """Which cache this collector has mounted: a node directory (`host_path`), a claim
    (`claim`), or, with neither, any shared cache (a collector run by hand)."""

    host_path: str | None = None
    claim: str | None = None

    def sees(self, md: Manifest) -> bool:
        """True when `md`'s cache is the one mounted here, so this collector's report is
        about its files (a PVC's content is no node directory's, and the reverse)."""
        if not _shared(md):
            return False
        cache = md["spec"].get("cache") or {}
        if self.claim:
            return bool(cache.get("volume") == "persistentVolumeClaim"
                        and cache.get("claimName") == self.claim)
        if self.host_path:
            return bool(cache.get("volume") == "hostPath"
                        and cache.get("hostPath") == self.host_path)
        return True


def inventory_patches(
    mds: Iterable[Manifest], entries: Iterable[eviction.Entry], node: str,
    scope: Scope = Scope(),
) -> list[tuple[Manifest, dict[str, str | None]]]:
    """The annotation each ModelDeployment caching where this collector looks needs so it
    shows what `node` holds of its model; only those whose annotation differs from what is
    there."""
    key = inventory_annotation_key(node)
    held: dict[str, dict[str, int]] = {}
    for entry in entries:
        held.setdefault(entry.name, {})[entry.version] = entry.bytes
    patches = []
    for md in mds:
        if not scope.sees(md) or (name := _model_name(md)) is None:
            continue
        annotations = md.get("metadata", {}).get("annotations") or {}
        versions = held.get(name, {})
        wanted = None if not versions else json.dumps(
            NodeInventory(node=node, versions=dict(sorted(versions.items()))).model_dump(),
            separators=(",", ":"))
        if annotations.get(key) != wanted:
            patches.append((md, {key: wanted}))
    return patches


# -- doing ------------------------------------------------------------------------------


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_pass(api: Api, root: Path, node: str, min_age: float,
             scope: Scope = Scope()) -> PassResult:
    """One collection pass over the cache under `root` on `node` (for a claim shared by
    every node, `node` names the claim)."""
    mds = api.list_model_deployments()
    refs = reference_set(mds)
    eviction.write_references(root, refs)
    removed = eviction.collect(root, refs, min_age)
    eviction.clean_stale_staging(root, min_age)
    by_name: dict[str, list[Manifest]] = {}
    for md in mds:
        if scope.sees(md) and (name := _model_name(md)):
            by_name.setdefault(name, []).append(md)
    where = f"claim {scope.claim}" if scope.claim else f"node {node}"
    for item in removed:
        message = (f"{where}: removed cached {item.name}/{item.version} (no longer "
                   f"referenced), freed {item.bytes} bytes")
        for md in by_name.get(item.name, []):
            _quietly(functools.partial(
                api.post_event, md, "CacheVersionRemoved", message, node, _stamp()))
    entries = eviction.scan(root)
    patches = inventory_patches(mds, entries, node, scope)
    for md, patch in patches:
        meta = md["metadata"]
        _quietly(functools.partial(api.annotate, meta["namespace"], meta["name"], patch))
    kept = sum(e.bytes for e in entries)
    log.info("cache gc on %s: %d versions kept (%d bytes), %d removed (%d bytes freed)",
             node, len(entries), kept, len(removed), sum(r.bytes for r in removed))
    return PassResult(removed, len(entries), len(patches))


def _quietly(call: Callable[[], None]) -> None:
    # A report that fails (the object was deleted, RBAC) must not stop the collection.
    try:
        call()
    except Exception as error:  # logged; the next pass reports again
        log.warning("cache gc: could not report: %s", error)


def run_offline(root: Path, references: Path, min_age: float) -> list[eviction.Removed]:
    """One pass with a reference set read from a file (no API server)."""
    refs = ReferenceSet.model_validate_json(references.read_text(encoding="utf-8"))
    eviction.write_references(root, refs)
    return eviction.collect(root, refs, min_age)


def loop(step: Callable[[], object], interval: float,
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Run `step` every `interval` seconds for ever; a failed pass is logged, not fatal."""
    while True:
        try:
            step()
        except Exception as error:  # the next pass tries again
            log.error("cache gc pass failed: %s", error)
        sleep(interval)


