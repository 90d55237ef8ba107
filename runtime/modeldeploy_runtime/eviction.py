"""Which cached versions go, and removing them: the cache's lifecycle on one node.

Deciding is pure (`unreferenced`, `room_for`): entries, the reference set and numbers in,
entries to remove out. Doing (`scan`, `remove`) is thin and safe: a version is removed only
while this process holds its fetch lock and its in-use lock exclusively, so neither a fetch
writing it nor a pod that has it open ever loses it; and only when it was not used for
`min_age` seconds, which covers the moment between a pod's fetch and its start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_contract.cache import REFERENCES_FILE, ReferenceSet

from modeldeploy_runtime import cache
from modeldeploy_runtime.errors import CacheFull

log = logging.getLogger("modeldeploy.runtime")


@dataclass(frozen=True)
class Entry:
    """One complete cached version."""

    name: str
    version: str
    path: Path
    bytes: int
    last_used: float


@dataclass(frozen=True)
class Removed:
    """One version removed, and the bytes it freed."""

    name: str
    version: str
    bytes: int


# -- deciding ---------------------------------------------------------------------------


def unreferenced(entries: Iterable[Entry], refs: ReferenceSet) -> list[Entry]:
    """The entries no ModelDeployment references, least recently used first."""
    return sorted(
        (e for e in entries if not refs.keeps(e.name, e.version)),
        key=lambda e: (e.last_used, e.name, e.version),
    )


def room_for(
    entries: Sequence[Entry], refs: ReferenceSet, needed: int, limit: int,
    busy: frozenset[tuple[str, str]] = frozenset(),
) -> list[Entry]:
    """The least-recently-used unreferenced entries to evict so `needed` more bytes fit
    under `limit`; raise CacheFull when even evicting all of them would not do. `busy`
    entries (open in a pod) are kept like referenced ones."""
    held = sum(e.bytes for e in entries)
    if held + needed <= limit:
        return []
    candidates = [e for e in unreferenced(entries, refs) if (e.name, e.version) not in busy]
    chosen: list[Entry] = []
    for entry in candidates:
        chosen.append(entry)
        held -= entry.bytes
        if held + needed <= limit:
            return chosen
    kept = [e for e in entries if e not in chosen]
    listed = ", ".join(f"{e.name}/{e.version} ({e.bytes} bytes)" for e in kept) or "nothing"
    raise CacheFull(
        f"cache.sizeLimit is {limit} bytes and the new version needs {needed} bytes, but the "
        f"versions still referenced or in use take {held} bytes ({listed}); raise "
        "spec.cache.sizeLimit, or wait for the rollback window to pass so older versions "
        "are no longer referenced"
    )


# -- doing ------------------------------------------------------------------------------


def scan(root: Path) -> list[Entry]:
    """Every complete entry under `root` (`<root>/<name>/<version>/` with a manifest)."""
    found: list[Entry] = []
    if not root.is_dir():
        return found
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if name_dir.name.startswith("."):
            continue
        for entry in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            if entry.name.startswith(".") or not (entry / cache.MANIFEST_NAME).is_file():
                continue
            try:
                size = sum(cache.read_manifest(entry).sizes.values())
            except (OSError, ValueError):
                continue
            found.append(Entry(name_dir.name, entry.name, entry, size, cache.last_used(entry)))
    return found


@contextlib.contextmanager
def space_locked(root: Path) -> Iterator[None]:
    """Hold the node-wide lock under which fetches make room and download, one at a time."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".modeldeploy-space.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_references(root: Path) -> ReferenceSet | None:
    """The reference set the collector last wrote under `root`; None when there is none."""
    try:
        return ReferenceSet.model_validate_json((root / REFERENCES_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def write_references(root: Path, refs: ReferenceSet) -> None:
    """Replace the reference file atomically (a fetch may read it at any moment)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{REFERENCES_FILE}.tmp"
    staging.write_text(refs.model_dump_json(by_alias=True), encoding="utf-8")
    staging.replace(root / REFERENCES_FILE)


def remove(entry: Entry, min_age: float, now: float | None = None) -> bool:
    """Remove `entry` unless it is being fetched, open in a pod, or used within `min_age`."""
    now = time.time() if now is None else now
    with cache.try_exclusive(entry.path) as free:
        if not free:
            log.info("keeping %s/%s: a pod has it open or a fetch is writing it",
                     entry.name, entry.version)
            return False
        # Re-read under the locks: a pod may have started since the scan.
        if now - cache.last_used(entry.path) < min_age:
            return False
        if not entry.path.is_dir():
            return False
        cache.discard(entry.path)
    return True


def clean_stale_staging(root: Path, min_age: float, now: float | None = None) -> int:
    """Remove `.tmp-*` directories no fetch is writing; returns the bytes freed."""
    now = time.time() if now is None else now
    freed = 0
    for name_dir in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for tmp in name_dir.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime < min_age:
                    continue
                version = tmp.name[len(".tmp-"):].rsplit("-", 1)[0].removesuffix("-gc")
                with cache.try_exclusive(name_dir / version) as free:
                    if free:
                        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
                        shutil.rmtree(tmp, ignore_errors=True)
                        freed += size
    return freed


def collect(root: Path, refs: ReferenceSet, min_age: float) -> list[Removed]:
    """One pass: remove every unreferenced version that no pod has open."""
    removed = []
    for entry in unreferenced(scan(root), refs):
        if remove(entry, min_age):
            log.info("removed %s/%s from %s: unreferenced; freed %d bytes",
                     entry.name, entry.version, root, entry.bytes)
            removed.append(Removed(entry.name, entry.version, entry.bytes))
    return removed


# How long a fetch waits for pods still draining an unreferenced version to let go of it.
RELEASE_WAIT_SECONDS = 60.0


def make_room(
    root: Path, name: str, version: str, needed: int, limit: int,
    release_wait: float = RELEASE_WAIT_SECONDS, sleep: Callable[[float], None] = time.sleep,
) -> list[Removed]:
    """Evict least-recently-used unreferenced versions until `needed` bytes fit in `limit`.

    An unreferenced version a pod still has open (one draining after a rollout) is waited
    for, up to `release_wait` seconds, before the fetch gives up with CacheFull.
    Without a reference set (no collector on this node) every other version counts as
    referenced: evicting blindly could remove a last-known-good version.
    """
    refs = read_references(root)
    entries = [e for e in scan(root) if (e.name, e.version) != (name, version)]
    if refs is None:
        refs = ReferenceSet(guarded_names=sorted({e.name for e in entries}))
    removed: list[Removed] = []
    busy: set[tuple[str, str]] = set()
    deadline = time.monotonic() + release_wait
    while True:
        gone = {(r.name, r.version) for r in removed}
        left = [e for e in entries if (e.name, e.version) not in gone]
        try:
            chosen = room_for(left, refs, needed, limit, frozenset(busy))
        except CacheFull as error:
            if busy and time.monotonic() < deadline:
                log.info("waiting for pods to release %s before evicting",
                         ", ".join(f"{n}/{v}" for n, v in sorted(busy)))
                sleep(1.0)
                busy.clear()
                continue
            raise CacheFull(f"cannot fetch {name}/{version} into {root}: {error}") from None
        if not chosen:
            return removed
        for entry in chosen:
            if not remove(entry, 0.0):
                # Open in a pod: it stays for now; decide again with it kept.
                busy.add((entry.name, entry.version))
                break
            log.info("evicted %s/%s (least recently used, unreferenced) to keep "
                     "cache.sizeLimit %d bytes; freed %d bytes",
                     entry.name, entry.version, limit, entry.bytes)
            removed.append(Removed(entry.name, entry.version, entry.bytes))
