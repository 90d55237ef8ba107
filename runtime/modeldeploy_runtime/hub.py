"""Copy one Hugging Face repository revision into a staging directory.

`huggingface_hub` reads HF_ENDPOINT (a mirror or private hub) and HF_HUB_OFFLINE (use only
the local hub cache) from the environment; this module passes them through unchanged.
"""

from __future__ import annotations

import os
import shutil
from fnmatch import fnmatch
from pathlib import Path

from modeldeploy_contract.config import HuggingFaceSource

from modeldeploy_runtime.cache import safe_relative
from modeldeploy_runtime.errors import FetchError


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _pattern(p: str) -> str:
    # The hub treats "dir/" as "everything under dir/".
    return p + "*" if p.endswith("/") else p


def select(names: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """The repo files kept by include/exclude globs, with the hub's matching rules."""
    kept = [n for n in names if not include or any(fnmatch(n, _pattern(p)) for p in include)]
    return [n for n in kept if not any(fnmatch(n, _pattern(p)) for p in exclude)]


def download(source: HuggingFaceSource, staging: Path) -> dict[str, int]:
    """Download the matching files into `staging`; returns relative path -> expected size.

    Online, the sizes come from the hub's file listing, so a truncated file is caught.
    Offline there is no listing: the sizes are those on disk, and only model.sha256 can
    catch corruption.
    """
    import huggingface_hub

    include = source.include or None
    exclude = source.exclude or None
    where = f"huggingFace repo {source.repo!r} at revision {source.revision!r}"
    expected: dict[str, int] = {}
    try:
        if not _offline():
            info = huggingface_hub.HfApi().model_info(
                source.repo, revision=source.revision, files_metadata=True
            )
            siblings = {s.rfilename: s.size for s in (info.siblings or [])}
            for name in select(list(siblings), source.include, source.exclude):
                size = siblings[name]
                if size is not None:
                    expected[safe_relative(name)] = int(size)
        huggingface_hub.snapshot_download(
            source.repo,
            revision=source.revision,
            local_dir=staging,
            allow_patterns=include,
            ignore_patterns=exclude,
            local_files_only=_offline(),
        )
    except FetchError:
        raise
    except Exception as error:  # the hub client raises many unrelated types
        hint = (
            "HF_HUB_OFFLINE is set: pre-populate the hub cache (HF_HOME) or unset it"
            if _offline()
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
    return expected
