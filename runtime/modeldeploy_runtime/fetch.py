"""The cache populator: make `<cache>/<name>/<version>/` complete, or fail leaving no entry."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_contract.config import RuntimeConfig

from modeldeploy_runtime import cache, eviction
from modeldeploy_runtime.errors import CacheFull, IntegrityError

log = logging.getLogger("modeldeploy.runtime")

@dataclass(frozen=True)
class Downloaded:
    """What a downloader put into the staging dir."""

    sizes: dict[str, int]  # relative path -> expected size
    revision: str | None = None  # the exact source revision, e.g. the hub commit sha


# (config, staging dir) -> what was downloaded; a seam for tests and new sources.
Downloader = Callable[[RuntimeConfig, Path], Downloaded]
# config -> bytes the version will take, asked before downloading when cache.sizeLimit is set.
Sizer = Callable[[RuntimeConfig], int]


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one fetch."""

    entry: Path
    hit: bool
    bytes: int
    seconds: float
    waited_for_lock_seconds: float
    revision: str | None = None


def default_downloader(config: RuntimeConfig, staging: Path) -> Downloaded:
    """Pick the source's downloader; imports stay lazy so `serve` never loads boto3."""
    source = config.model.source
    if source.s3 is not None:
        from modeldeploy_runtime import s3

        transfer = s3.download(s3.make_client(source.s3), source.s3, staging)
        return Downloaded(dict(s3.iter_sizes(transfer.files)))
    assert source.hugging_face is not None  # the config validator guarantees one source
    from modeldeploy_runtime import hub

    snapshot = hub.download(source.hugging_face, staging)
    return Downloaded(snapshot.sizes, snapshot.commit)


def default_sizer(config: RuntimeConfig) -> int:
    """The bytes the source holds for this version, from its listing (nothing downloaded)."""
    source = config.model.source
    if source.s3 is not None:
        from modeldeploy_runtime import s3

        return sum(f.size for f in s3.list_files(s3.make_client(source.s3), source.s3))
    assert source.hugging_face is not None
    from modeldeploy_runtime import hub

    return hub.total_bytes(source.hugging_face)


def fetch(
    config: RuntimeConfig, cache_root: Path, downloader: Downloader = default_downloader,
    sizer: Sizer = default_sizer,
) -> FetchResult:
    """Populate the cache entry for the configured model version (a hit skips the download).

    With cache.sizeLimit set, the version's size is asked of the source first and room is
    made by evicting least-recently-used unreferenced versions; when that cannot be done
    the fetch fails with CacheFull before writing a byte.
    """
    started = time.monotonic()
    model = config.model
    entry = cache.entry_dir(cache_root, model.name, model.version)
    for rel in model.sha256:
        cache.safe_relative(rel)
    limit = config.cache.size_limit_bytes
    with cache.locked(entry) as waited:
        if cache.is_complete(entry):
            log.info("cache hit: %s is complete; skipping the download", entry)
            cache.touch_used(entry)
            return FetchResult(entry, True, 0, time.monotonic() - started, waited,
                               cache.read_manifest(entry).revision)
        cache.clean_leftovers(entry)
        with contextlib.ExitStack() as space:
            if limit is not None:
                # Two fetches making room at once could both fit alone and overflow together.
                space.enter_context(eviction.space_locked(cache_root))
                needed = sizer(config)
                eviction.make_room(cache_root, model.name, model.version, needed, limit)
            sizes, downloaded = _download(config, entry, downloader, cache_root, limit)
        cache.touch_used(entry)
    total = sum(sizes.values())
    seconds = time.monotonic() - started
    log.info(
        "fetched %s/%s: %d files, %.1f MB in %.2f s (%.0f MB/s) into %s%s",
        model.name, model.version, len(sizes), total / 1e6, seconds,
        total / 1e6 / max(seconds, 1e-9), entry,
        f" (revision {downloaded.revision})" if downloaded.revision else "",
    )
    return FetchResult(entry, False, total, seconds, waited, downloaded.revision)


def _download(
    config: RuntimeConfig, entry: Path, downloader: Downloader, cache_root: Path,
    limit: int | None,
) -> tuple[dict[str, int], Downloaded]:
    model = config.model
    staging = cache.new_staging_dir(entry)
    try:
        downloaded = downloader(config, staging)
        sizes = downloaded.sizes
        if limit is not None:
            # The source may have grown since it was sized: re-check before committing.
            others = sum(e.bytes for e in eviction.scan(cache_root)
                         if (e.name, e.version) != (model.name, model.version))
            if others + sum(sizes.values()) > limit:
                raise CacheFull(
                    f"{model.name}/{model.version} grew to {sum(sizes.values())} bytes "
                    f"while it downloaded; with {others} bytes of other versions it "
                    f"exceeds cache.sizeLimit {limit} bytes; raise spec.cache.sizeLimit"
                )
        missing = sorted(set(model.sha256) - set(sizes))
        if missing:
            raise IntegrityError(
                f"model.sha256 lists {missing[0]!r} but the source has no such file; "
                "fix the manifest or the source"
            )
        cache.verify_files(staging, sizes, model.sha256)
        cache.commit(staging, entry, cache.Manifest(
            sizes=sizes, sha256=dict(model.sha256), revision=downloaded.revision))
    except BaseException:
        # Includes KeyboardInterrupt/SystemExit: a partial download must never linger.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sizes, downloaded
