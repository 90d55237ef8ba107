"""examples/: every example is a valid ModelDeployment the operator can render."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from modeldeploy_operator.api.spec import API_VERSION, KIND, MAX_NAME_LENGTH, parse_spec
from modeldeploy_operator.planning import builders

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_the_three_documented_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "minilm-embedding-rolling.yaml",
        "text-classifier-bluegreen.yaml",
        "minilm-gpu.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_renders(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert (doc["apiVersion"], doc["kind"]) == (API_VERSION, KIND)
        assert len(doc["metadata"]["name"]) <= MAX_NAME_LENGTH
        spec = parse_spec(doc["spec"])
        owner = builders.Owner(doc["metadata"]["name"], "default", "uid")
        deployment = builders.deployment(
            owner, "md", spec, builders.template_hash(spec), spec.replicas
        )
        assert deployment["spec"]["replicas"] == spec.replicas


def test_gpu_example_asks_for_a_gpu_in_limits() -> None:
    for doc in yaml.safe_load_all((EXAMPLES[0].parent / "minilm-gpu.yaml").read_text()):
        spec = parse_spec(doc["spec"])
        dep = builders.deployment(builders.Owner("minilm-gpu", "d", "u"), "md", spec, "h", 1)
        serve = dep["spec"]["template"]["spec"]["containers"][0]
        assert serve["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_gpu_pool_example_tolerates_the_pools_taint_and_selects_its_nodes() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES[0].parent / "minilm-gpu.yaml").read_text()))
    pool = next(d for d in docs if d["metadata"]["name"] == "minilm-gpu-pool")
    spec = parse_spec(pool["spec"])
    dep = builders.deployment(builders.Owner("minilm-gpu-pool", "d", "u"), "md", spec, "h", 2)
    pod = dep["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["runtimeClassName"] == "nvidia"
