"""The wrapper go.mod is generated from the release's own go.mod."""

from __future__ import annotations

from pathlib import Path

import pytest
from modeldeploy_e2e import gomod

UPSTREAM = """module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require k8s.io/api v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_every_staging_module_is_pinned_to_its_published_twin() -> None:
    text = gomod.wrapper_gomod(UPSTREAM, "v1.36.3", "example.dev/wrap")
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.36.3" in text
    assert "go 1.26.0" in text and "godebug default=go1.26" in text
    assert "require k8s.io/kubernetes v1.36.3" in text


def test_a_non_release_version_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"v1\.36\.3"):
        gomod.wrapper_gomod(UPSTREAM, "master", "example.dev/wrap")


def test_committed_wrapper_pins_every_staging_module() -> None:
    committed = (Path(__file__).parents[1] / "go" / "kubernetes" / "go.mod").read_text()
    replaced = [line for line in committed.splitlines() if " => k8s.io/" in line]
    assert len(replaced) >= 30
    assert all(line.strip().endswith("v0.36.3") for line in replaced)
