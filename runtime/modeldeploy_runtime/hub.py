"""Copy one Hugging Face repository revision into a staging directory.

Online (the default) the revision ("main", a tag) is first resolved to its commit sha with
the hub's model-info API, and exactly that commit is downloaded, so the cache entry records
which files were served even when "main" moves. Offline (spec `offline: true`, or
HF_HUB_OFFLINE in the pod env when the spec leaves it unset) nothing is asked of the network:
the revision is resolved in the pre-populated hub cache (HF_HOME / HF_HUB_CACHE, filled by
`huggingface_hub.snapshot_download` or `hf download`) and its snapshot is copied.
`huggingface_hub` reads HF_ENDPOINT (a mirror or private hub) and HF_TOKEN itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from modeldeploy_contract.config import HuggingFaceSource

from modeldeploy_runtime.cache import safe_relative
from modeldeploy_runtime.errors import FetchError

_TRUE = {"1", "true", "yes", "on"}


def env_offline(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the pod env asks for offline mode (huggingface_hub's own rule)."""
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def is_offline(source: HuggingFaceSource, env: Mapping[str, str] = os.environ) -> bool:
    """The spec decides when it says; otherwise HF_HUB_OFFLINE in the pod env."""
    return source.offline if source.offline is not None else env_offline(env)


def _pattern(p: str) -> str:
    # The hub treats "dir/" as "everything under dir/".
    return p + "*" if p.endswith("/") else p


def select(names: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """The repo files kept by include/exclude globs, with the hub's matching rules."""
    kept = [n for n in names if not include or any(fnmatch(n, _pattern(p)) for p in include)]
    return [n for n in kept if not any(fnmatch(n, _pattern(p)) for p in exclude)]


@dataclass(frozen=True)
class Snapshot:
    """What was copied: relative path -> expected size, and the commit sha it came from."""

    sizes: dict[str, int]
    commit: str


def total_bytes(source: HuggingFaceSource, env: Mapping[str, str] = os.environ) -> int:
    """Bytes of the matching files at the revision: the hub's listing, or offline the
    pre-populated hub cache's snapshot (nothing is copied)."""
    import huggingface_hub

    where = f"huggingFace repo {source.repo!r} at revision {source.revision!r}"
    try:
        if is_offline(source, env):
            folder = Path(huggingface_hub.snapshot_download(
                source.repo, revision=source.revision, allow_patterns=source.include or None,
                ignore_patterns=source.exclude or None, local_files_only=True,
            ))
            return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        info = huggingface_hub.HfApi().model_info(
            source.repo, revision=source.revision, files_metadata=True)
    except Exception as error:  # the hub client raises many unrelated types
        raise FetchError(f"sizing {where} for cache.sizeLimit failed: "
                         f"{type(error).__name__}; check the repo id and revision") from None
    sizes = {s.rfilename: s.size or 0 for s in (info.siblings or [])}
    return sum(sizes[n] for n in select(list(sizes), source.include, source.exclude))


def download(source: HuggingFaceSource, staging: Path,
             env: Mapping[str, str] = os.environ) -> Snapshot:
    """Download the matching files of the resolved commit into `staging`.

    Online, the sizes come from the hub's file listing, so a truncated file is caught.
    Offline there is no listing: the sizes are those in the cache, and only model.sha256 can
    catch corruption.
    """
    import huggingface_hub

    offline = is_offline(source, env)
    where = f"huggingFace repo {source.repo!r} at revision {source.revision!r}"
    if source.offline is False and env_offline(env):
        raise FetchError(
            f"downloading {where}: model.source.huggingFace.offline is false but the pod env "
            "sets HF_HUB_OFFLINE; remove one of them"
        )
    include = source.include or None
    exclude = source.exclude or None
    expected: dict[str, int] = {}
    try:
        if offline:
            folder = Path(huggingface_hub.snapshot_download(
                source.repo, revision=source.revision, allow_patterns=include,
                ignore_patterns=exclude, local_files_only=True,
            ))
            commit = folder.name  # snapshots/<commit sha>
            for path in sorted(folder.rglob("*")):
                if path.is_file():  # follows the snapshot's symlinks into blobs/
                    rel = safe_relative(str(path.relative_to(folder)))
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, staging / rel)
        else:
            info = huggingface_hub.HfApi().model_info(
                source.repo, revision=source.revision, files_metadata=True
            )
            if not info.sha:
                raise FetchError(f"{where}: the hub named no commit for the revision; check "
                                 "HF_ENDPOINT points at a hub")
            commit = info.sha
            siblings = {s.rfilename: s.size for s in (info.siblings or [])}
            for name in select(list(siblings), source.include, source.exclude):
                size = siblings[name]
                if size is not None:
                    expected[safe_relative(name)] = int(size)
            huggingface_hub.snapshot_download(
                source.repo, revision=commit, local_dir=staging,
                allow_patterns=include, ignore_patterns=exclude,
            )
    except FetchError:
        raise
    except Exception as error:  # the hub client raises many unrelated types
        hint = (
            "offline mode (model.source.huggingFace.offline or HF_HUB_OFFLINE): pre-populate "
            "the hub cache (HF_HOME or HF_HUB_CACHE) with this repo and revision, or go online"
            if offline
            else "check the repo id, revision, HF_ENDPOINT and HF_TOKEN"
        )
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise FetchError(
            f"downloading {where} failed: {type(error).__name__}: {first_line[:200]}; {hint}"
        ) from None
    # snapshot_download keeps its own bookkeeping in local_dir; it is not part of the model.
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    on_disk = {
        str(p.relative_to(staging)): p.stat().st_size for p in staging.rglob("*") if p.is_file()
    }
    if not on_disk:
        raise FetchError(f"{where} has no files matching include/exclude; check the patterns")
    for rel, size in on_disk.items():
        expected.setdefault(rel, size)
    return Snapshot(expected, commit)
