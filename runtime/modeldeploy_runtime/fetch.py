"""The cache populator: make `<cache>/<name>/<version>/` complete, or fail leaving no entry."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_contract.config import RuntimeConfig

from modeldeploy_runtime import cache
from modeldeploy_runtime.errors import IntegrityError

log = logging.getLogger("modeldeploy.runtime")

@dataclass(frozen=True)
class Downloaded:
    """What a downloader put into the staging dir."""

    sizes: dict[str, int]  # relative path -> expected size
    revision: str | None = None  # the exact source revision, e.g. the hub commit sha


# (config, staging dir) -> what was downloaded; a seam for tests and new sources.
Downloader = Callable[[RuntimeConfig, Path], Downloaded]


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


def fetch(
    config: RuntimeConfig, cache_root: Path, downloader: Downloader = default_downloader
) -> FetchResult:
    """Populate the cache entry for the configured model version (a hit skips the download)."""
    started = time.monotonic()
    model = config.model
    entry = cache.entry_dir(cache_root, model.name, model.version)
    for rel in model.sha256:
        cache.safe_relative(rel)
    with cache.locked(entry) as waited:
        if cache.is_complete(entry):
            log.info("cache hit: %s is complete; skipping the download", entry)
            return FetchResult(entry, True, 0, time.monotonic() - started, waited,
                               cache.read_manifest(entry).revision)
        cache.clean_leftovers(entry)
        staging = cache.new_staging_dir(entry)
        try:
            downloaded = downloader(config, staging)
            sizes = downloaded.sizes
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
    total = sum(sizes.values())
    seconds = time.monotonic() - started
    log.info(
        "fetched %s/%s: %d files, %.1f MB in %.2f s (%.0f MB/s) into %s%s",
        model.name, model.version, len(sizes), total / 1e6, seconds,
        total / 1e6 / max(seconds, 1e-9), entry,
        f" (revision {downloaded.revision})" if downloaded.revision else "",
    )
    return FetchResult(entry, False, total, seconds, waited, downloaded.revision)
