"""Where the harness keeps binaries and state, and the PATH its processes see."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"
BIN_DIR = CACHE_DIR / "bin"
# What outlives a checkout, as Go's and uv's caches do: the image store and registry, and
# the real node's containerd content (gigabytes: a fresh clone on this machine reuses them
# rather than building, pushing and pulling the runtime image again, or filling the disk).
MACHINE_CACHE = Path(
    os.environ.get("MODELDEPLOY_MACHINE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"
)
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def harness_path(existing: str | None = None) -> str:
    """Return PATH with .cache/bin and the venv first.

    /usr/bin/kubectl on these machines is not a real kubectl, and the harness runs the
    venv's console scripts (`modeldeploy-operator`) by name, so both must win over the
    system PATH.
    """
    rest = existing if existing is not None else os.environ.get("PATH", "/usr/bin:/bin")
    return os.pathsep.join([str(BIN_DIR), str(VENV_BIN), rest])


def binary(name: str) -> Path:
    """Return .cache/bin/<name>, or raise naming the make target that builds it."""
    path = BIN_DIR / name
    if not path.is_file():
        target = "minio" if name == "minio" else "binaries"
        raise FileNotFoundError(
            f"{name} not found at {path}; run `make {target}` in {REPO_ROOT} to build it"
        )
    return path
