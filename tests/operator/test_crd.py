"""The committed CRD: current with the models, structural, documented, and with the printer
columns and CEL rules `kubectl` users rely on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_operator import crdgen, spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds/modeldeployments.modeldeploy.dev.yaml"

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> Schema:
    root: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def walk(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path, depth first."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_is_what_make_crds_generates() -> None:
    assert CRD_PATH.read_text() == crdgen.render(), "crds/ is stale: run `make crds`"


def test_crdgen_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crdgen.render().replace("Last-known-good version.", "edited by hand"))
    assert crdgen.main(["--out", str(stale), "--check"]) == 1
    assert crdgen.main(["--out", str(CRD_PATH), "--check"]) == 0


def test_schema_is_structural_with_no_references_or_unions(schema: Schema) -> None:
    text = yaml.safe_dump(schema)
    for keyword in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not:", "const:"):
        assert keyword not in text, keyword
    for path, node in walk(schema, "root"):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "array":
            assert "items" in node, f"{path} array without items"


def test_every_spec_and_status_field_has_a_description(schema: Schema) -> None:
    for section in ("spec", "status"):
        for path, node in walk(schema["properties"][section], section):
            # List items and map values are not fields; their parent describes them.
            if path != section and not path.endswith(("[]", "{}")):
                assert node.get("description"), f"{path} has no description"


def _conforms(value: Any, node: Schema) -> bool:
    if node.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str)
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        return isinstance(value, dict) and all(
            k in props and _conforms(v, props[k]) for k, v in value.items()
        )
    if kind == "array":
        return isinstance(value, list) and all(_conforms(v, node["items"]) for v in value)
    expected = {"string": str, "integer": int, "number": int | float, "boolean": bool}[kind]
    ok = isinstance(value, expected) and not (kind != "boolean" and isinstance(value, bool))
    return ok and ("enum" not in node or value in node["enum"])


def test_every_default_conforms_to_its_own_schema(schema: Schema) -> None:
    # The API server refuses a CRD whose defaults would be pruned or fail validation.
    defaults = [(p, n) for p, n in walk(schema["properties"]["spec"], "spec") if "default" in n]
    assert len(defaults) > 20
    for path, node in defaults:
        assert _conforms(node["default"], node), f"{path} default {node['default']!r}"


def test_documented_defaults_reach_the_schema(schema: Schema) -> None:
    props = schema["properties"]["spec"]["properties"]
    assert props["replicas"]["default"] == 1
    assert props["progressDeadlineSeconds"]["default"] == 600
    rolling = props["strategy"]["properties"]["rolling"]["properties"]
    assert (rolling["maxSurge"]["default"], rolling["maxUnavailable"]["default"]) == (1, 0)
    assert props["strategy"]["properties"]["type"]["enum"] == ["Rolling", "BlueGreen"]
    assert schema["required"] == ["spec"]
    assert props["model"]["properties"]["version"]["pattern"] == spec.DNS_LABEL


def _rules(schema: Schema) -> dict[str, str]:
    found: dict[str, str] = {}
    for path, node in walk(schema, "root"):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], f"rule at {path} has no message"
            found[rule["message"]] = rule["rule"]
    return found


@pytest.mark.parametrize(
    "message",
    [
        "exactly one of s3 or huggingFace must be set",
        "blueGreen settings are only allowed with type BlueGreen",
        "rolling settings are only allowed with type Rolling",
        "maxSurge and maxUnavailable must not both be 0: no pod could be replaced",
        "exactly one of label or embedding must be set",
        "validation.expected.label needs runtime.task text-classification",
        "hostPath must be set when volume is hostPath",
        f"metadata.name must be at most {spec.MAX_NAME_LENGTH} characters "
        "(child Deployments and Services append a suffix)",
    ],
)
def test_cross_field_rules_are_enforced_by_the_api_server(schema: Schema, message: str) -> None:
    assert message in _rules(schema)


def test_resource_identity_and_status_subresource(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "modeldeployments.modeldeploy.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelDeployment",
        "modeldeployments",
        ["md"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_answer_what_runs_and_whether_it_is_healthy(
    crd: dict[str, Any], schema: Schema
) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"].upper() for c in columns] == [
        "VERSION",
        "TARGET",
        "LKG",
        "READY",
        "PHASE",
        "STRATEGY",
        "AGE",
    ]
    for column in columns:
        section, field = column["jsonPath"].lstrip(".").split(".", 1)
        if section == "metadata":
            continue
        node = schema["properties"][section]
        for part in field.split("."):
            node = node["properties"][part]
        assert node["type"] == column["type"], column


def test_conditions_are_a_map_list_keyed_by_type(schema: Schema) -> None:
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {"type", "status", "reason"}


def _unknown_keys(value: Any, node: Schema, path: str) -> Iterator[str]:
    if isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties", {})
        for key, child in value.items():
            if key not in props:
                yield f"{path}.{key}"
            else:
                yield from _unknown_keys(child, props[key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in node:
        for index, child in enumerate(value):
            yield from _unknown_keys(child, node["items"], f"{path}[{index}]")


def test_status_the_planner_writes_survives_the_api_servers_pruning(
    schema: Schema, new_cluster: Any
) -> None:
    # A field missing from the CRD schema would be dropped on write, and the planner would
    # lose its rollout bookkeeping on the next read.
    cluster = new_cluster(strategy={"type": "BlueGreen"})
    cluster.settle(steps=3)
    cluster.set_version("v2", "crash")
    cluster.settle(steps=3)
    status = cluster.status.to_dict()
    assert status["rollout"]["lastKnownGoodHash"] and status["rollout"]["failedVersions"]
    assert status["history"] and status["conditions"]
    assert list(_unknown_keys(status, schema["properties"]["status"], "status")) == []
