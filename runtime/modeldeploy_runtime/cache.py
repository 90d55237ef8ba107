"""The on-disk model cache: `<root>/<name>/<version>/`, complete only once renamed into place.

A version directory is written as `<root>/<name>/.tmp-<version>-<random>/`, verified, then
renamed. Rename within one directory is atomic on POSIX, so a reader either sees no entry or
a complete one; an interrupted fetch leaves only a `.tmp-*` directory, which the next fetch
removes. A `flock` on `<root>/<name>/.<version>.lock` makes pods sharing a hostPath take turns.

Lifecycle marks beside each entry, for the cache collector (`eviction`): a serving process
holds a shared `flock` on `<root>/<name>/.<version>.inuse` for as long as it runs (so a
version a pod has open is never removed), and every fetch or start touches
`<root>/<name>/.<version>.used`, whose mtime orders least-recently-used eviction.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from modeldeploy_runtime.errors import CacheKeyError, IntegrityError

MANIFEST_NAME = ".modeldeploy-manifest.json"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


class Manifest(BaseModel):
    """What a complete cache entry holds: relative path -> size (and sha256 when known)."""

    model_config = ConfigDict(extra="forbid")

    sizes: dict[str, int]
    sha256: dict[str, str] = {}
    # The exact source revision the files came from (a hub commit sha), when known.
    revision: str | None = None


def check_key(field: str, value: str) -> str:
    """Refuse a name or version that is not one plain path segment (no `/`, no `..`)."""
    if not _SAFE_KEY.match(value) or value in {".", ".."} or ".." in value:
        raise CacheKeyError(
            f"model.{field} {value!r} cannot be used as a cache directory name: use letters, "
            "digits, '.', '_', '+' or '-', starting with a letter or digit, and no '..'"
        )
    return value


def entry_dir(root: Path, name: str, version: str) -> Path:
    """The directory of one cached model version, checked to stay under `root`."""
    path = root / check_key("name", name) / check_key("version", version)
    resolved_root = root.resolve()
    if resolved_root not in path.resolve().parents:
        raise CacheKeyError(f"cache entry {path} escapes the cache root {root}")
    return path


def safe_relative(rel: str) -> str:
    """Refuse a remote file name that would land outside the entry directory."""
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or any(p in {"..", ""} for p in parts):
        raise CacheKeyError(f"remote file name {rel!r} would escape the cache entry; refusing it")
    return rel


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in large chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_files(
    directory: Path, sizes: Mapping[str, int], sha256: Mapping[str, str]
) -> None:
    """Raise IntegrityError unless every file has its expected size and (if given) digest."""
    for rel, expected in sizes.items():
        path = directory / rel
        actual = path.stat().st_size if path.is_file() else -1
        if actual != expected:
            raise IntegrityError(
                f"file {rel!r} has {actual} bytes, expected {expected}: the download was "
                "truncated or the source changed; fetch again"
            )
    for rel, digest in sha256.items():
        path = directory / rel
        if not path.is_file():
            raise IntegrityError(
                f"model.sha256 lists {rel!r} but the source has no such file; fix the manifest"
            )
        actual_digest = sha256_file(path)
        if actual_digest.lower() != digest.lower():
            raise IntegrityError(
                f"file {rel!r} has sha256 {actual_digest}, expected {digest}: the file is "
                "corrupt or the manifest is wrong; check model.sha256"
            )


def read_manifest(entry: Path) -> Manifest:
    """The manifest of a complete entry (check is_complete first)."""
    return Manifest.model_validate_json((entry / MANIFEST_NAME).read_text(encoding="utf-8"))


def is_complete(entry: Path) -> bool:
    """True when `entry` was renamed into place and its files still have the recorded sizes."""
    manifest_path = entry / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = read_manifest(entry)
        verify_files(entry, manifest.sizes, {})
    except (ValueError, OSError, IntegrityError):
        return False
    return True


@contextlib.contextmanager
def locked(entry: Path) -> Iterator[float]:
    """Hold an exclusive lock for one cache entry; yields the seconds spent waiting."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock_path = entry.parent / f".{entry.name}.lock"
    started = time.monotonic()
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _mark(entry: Path, suffix: str) -> Path:
    return entry.parent / f".{entry.name}.{suffix}"


@contextlib.contextmanager
def in_use(entry: Path) -> Iterator[None]:
    """Hold a shared lock saying a process has `entry` open; the collector skips it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _mark(entry, "inuse").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def try_exclusive(entry: Path) -> Iterator[bool]:
    """Try, without waiting, to hold both the fetch lock and the in-use lock exclusively.

    Yields False when a fetch is writing the entry or a process has it open: then it must
    not be removed.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for suffix in ("lock", "inuse"):
            handle = stack.enter_context(_mark(entry, suffix).open("a"))
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            stack.callback(fcntl.flock, handle.fileno(), fcntl.LOCK_UN)
        yield True


def touch_used(entry: Path) -> None:
    """Record that `entry` was just fetched or opened (least-recently-used eviction)."""
    mark = _mark(entry, "used")
    mark.touch()
    os.utime(mark)


def last_used(entry: Path) -> float:
    """When `entry` was last fetched or opened (epoch seconds); its mtime if never marked."""
    for path in (_mark(entry, "used"), entry):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def discard(entry: Path) -> None:
    """Remove a complete entry: renamed out of sight first, so no reader sees half of it.

    Call only inside `try_exclusive(entry)` that yielded True.
    """
    trash = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-gc-", dir=entry.parent))
    os.rename(entry, trash / entry.name)
    shutil.rmtree(trash, ignore_errors=True)
    _mark(entry, "used").unlink(missing_ok=True)


def clean_leftovers(entry: Path) -> None:
    """Remove temporary directories an interrupted fetch of this entry left behind."""
    for leftover in entry.parent.glob(f".tmp-{entry.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def new_staging_dir(entry: Path) -> Path:
    """A fresh temporary directory beside `entry` (same filesystem, so rename is atomic)."""
    return Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))


def commit(staging: Path, entry: Path, manifest: Manifest) -> None:
    """Write the manifest, fsync, and rename `staging` to `entry` atomically."""
    (staging / MANIFEST_NAME).write_text(
        json.dumps(manifest.model_dump(exclude_none=True)), encoding="utf-8")
    if entry.exists():
        # Only reached when an old entry failed is_complete(); replace it.
        shutil.rmtree(entry)
    fd = os.open(staging, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(staging, entry)
