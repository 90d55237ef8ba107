"""Put a model directory into a runtime cache as `modeldeploy-runtime fetch` would leave it
(staging directory, manifest, atomic commit), so a benchmark's `serve` starts from a warm
cache without a fetch."""

from __future__ import annotations

import shutil
from pathlib import Path


def place_in_cache(model_dir: Path, cache_root: Path, name: str, version: str) -> Path:
    """The cache entry of `name`/`version` under `cache_root`, filled from `model_dir`."""
    from modeldeploy_runtime import cache

    entry = cache.entry_dir(cache_root, name, version)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.new_staging_dir(entry)
    sizes = {}
    for path in model_dir.rglob("*"):
        if path.is_file():
            rel = path.relative_to(model_dir)
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / rel)
            sizes[str(rel)] = path.stat().st_size
    cache.commit(staging, entry, cache.Manifest(sizes=sizes))
    return entry
