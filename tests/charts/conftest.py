"""Fixtures for chart tests: the Helm binary built by `make binaries` and a renderer."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/modeldeploy"

Render = Callable[..., list[dict[str, Any]]]


def helm_binary() -> str:
    """The pinned Helm built into .cache/bin, else one on PATH; a clear error otherwise."""
    built = ROOT / ".cache/bin/helm"
    if built.exists():
        return str(built)
    found = shutil.which("helm")
    if found:
        return found
    raise RuntimeError("helm not found: run `make binaries` (it builds .cache/bin/helm)")


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """`helm template` the chart with extra --set/-f arguments; the objects it renders."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home),
        "HELM_CONFIG_HOME": str(home),
        "HELM_DATA_HOME": str(home),
    }

    def _render(*args: str, namespace: str = "modeldeploy-system") -> list[dict[str, Any]]:
        out = subprocess.run(
            [helm, "template", "md", str(CHART), "--namespace", namespace, "--include-crds", *args],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return _render
