"""The chart and the Dockerfiles stay honest: same CRD, real paths, real entry points."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD = "modeldeployments.modeldeploy.dev.yaml"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def test_chart_ships_the_same_crd_as_crds_folder() -> None:
    assert (ROOT / "charts/modeldeploy/crds" / CRD).read_text() == (ROOT / "crds" / CRD).read_text()


def test_there_is_an_operator_and_a_runtime_dockerfile() -> None:
    assert {p.name for p in DOCKERFILES} == {"operator.Dockerfile", "runtime.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_path_a_dockerfile_copies_exists_in_the_repo(dockerfile: Path) -> None:
    copies = [
        line.split()[1:-1]
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
    ]
    assert copies, "expected COPY lines"
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_entry_point_is_a_declared_console_script(dockerfile: Path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"', dockerfile.read_text(), re.M)
    assert entry and entry.group(1) in scripts


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root_with_a_pinned_base(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base and re.search(r":\d+\.\d+\.\d+-", base.group(1)), (
        "base image must pin a patch version"
    )


@pytest.mark.parametrize(("dockerfile", "ships", "drops"), [
    ("runtime.Dockerfile", "modeldeploy_runtime", {"modeldeploy_operator", "modeldeploy_e2e"}),
    ("operator.Dockerfile", "modeldeploy_operator", {"modeldeploy_runtime", "modeldeploy_e2e"}),
])
def test_each_image_keeps_only_the_packages_it_runs(dockerfile: str, ships: str,
                                                      drops: set[str]) -> None:
    text = (ROOT / "docker" / dockerfile).read_text()
    # The project is installed with --target /opt/app (its own layer); what it removes there.
    removed = set(re.findall(r"/opt/app/(modeldeploy_\w+)", text))
    assert removed == drops
    assert ships not in removed and "modeldeploy_contract" not in removed
    assert "COPY contract/modeldeploy_contract" in text
