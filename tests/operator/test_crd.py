"""The committed CRD: current with the models, structural, documented, and with the printer
columns and CEL rules `kubectl` users rely on."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from modeldeploy_operator.api import crdgen, spec
from modeldeploy_operator.api.schema import DNS_LABEL

from .conftest import raw_spec
from .test_spec import INVALID, edited

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
    assert props["model"]["properties"]["version"]["pattern"] == DNS_LABEL


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
        "exactly one of label, labels, embedding, order, entities, text, contains or pattern "
        "must be set",
        "validation.expected.text needs runtime.task text-generation",
        "validation.expected.pattern needs runtime.task text-generation",
        "generation is only for task text-generation",
        "maxTokens is only for text-generation (expected.text, contains or pattern)",
        "validation.expected.label needs runtime.task text-classification",
        "validation.expected.labels needs runtime.task text-classification",
        "validation.expected.order needs runtime.task reranking",
        "validation.expected.entities needs runtime.task token-classification",
        "documents goes with expected.order (reranking) and only with it",
        "hostPath must be set when volume is hostPath",
        "stageDeadlineSeconds.warmup must be below progressDeadlineSeconds, "
        "or the progress deadline always passes first",
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
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    # Each path names a field the schema has, of the type the scale subresource reads.
    properties = version["schema"]["openAPIV3Schema"]["properties"]
    assert properties["spec"]["properties"]["replicas"]["type"] == "integer"
    assert properties["status"]["properties"]["replicas"]["type"] == "integer"
    assert properties["status"]["properties"]["selector"]["type"] == "string"


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
        "REASON",
        "STRATEGY",
        "AGE",
        "MESSAGE",
    ]
    for column in columns:
        section, field = column["jsonPath"].lstrip(".").split(".", 1)
        if section == "metadata":
            continue
        node = schema["properties"][section]
        # .status.conditions[?(@.type=="Progressing")].reason: the list's item field.
        for part in re.sub(r"\[\?\(.*?\)\]", "", field).split("."):
            node = node["properties"][part]
            node = node.get("items", node)
        assert node["type"] == column["type"], column
    # Only in -o wide: the message is long.
    assert [c["name"] for c in columns if c.get("priority")] == ["Message"]


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


# --- what the API server refuses -----------------------------------------------------------
# A small model of the API server's checks on a custom resource: defaulting, the structural
# schema (strict field validation, as `kubectl apply` uses) and the CEL rules, evaluated with
# a real CEL interpreter. The e2e tier checks the same specs against a real kube-apiserver.


def _defaulted(value: Any, node: Schema) -> Any:
    if isinstance(value, dict) and node.get("type") == "object":
        out = dict(value)
        for name, child in node.get("properties", {}).items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = _defaulted(out[name], child)
        return out
    if isinstance(value, list) and "items" in node:
        return [_defaulted(item, node["items"]) for item in value]
    return value


_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": int | float,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _schema_errors(value: Any, node: Schema, path: str) -> list[str]:
    if node.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, int | str) and not isinstance(value, bool)
        return [] if ok else [f"{path}: Invalid value: must be an integer or a string"]
    kind = node.get("type")
    expected = _TYPES[kind] if kind else object
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        return [f"{path}: Invalid value: must be of type {kind}"]
    errors: list[str] = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: Unsupported value: {value!r}")
    if kind == "string":
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{path}: Invalid value: should match '{node['pattern']}'")
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", 1 << 30):
            errors.append(f"{path}: Invalid value: length out of range")
    if kind in ("integer", "number"):
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and (value <= low if node.get("exclusiveMinimum") else value < low):
            errors.append(f"{path}: Invalid value: should be greater than or equal to {low}")
        if high is not None and (value >= high if node.get("exclusiveMaximum") else value > high):
            errors.append(f"{path}: Invalid value: should be less than or equal to {high}")
    if kind == "array":
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", 1 << 30):
            errors.append(f"{path}: Invalid value: number of items out of range")
        for index, item in enumerate(value):
            errors += _schema_errors(item, node["items"], f"{path}[{index}]")
    if kind == "object" and path != ".metadata":  # metadata is validated by the server itself
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for name in node.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        for key, child in value.items():
            if key in props:
                errors += _schema_errors(child, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += _schema_errors(child, extra, f"{path}[{key}]")
            else:
                errors.append(f'{path}.{key}: unknown field "{path[1:]}.{key}"')
    if errors:
        return errors
    for rule in node.get("x-kubernetes-validations", []):
        program = _CEL.program(_CEL.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path}{rule.get('fieldPath', '')}: Invalid value: {rule['message']}")
    return errors


_CEL = celpy.Environment()


def api_server_errors(raw_spec_value: dict[str, Any], schema: Schema) -> list[str]:
    """What the API server would say to `kubectl apply` of a ModelDeployment with this spec."""
    obj = {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "minilm"},
        "spec": raw_spec_value,
    }
    return _schema_errors(_defaulted(obj, schema), schema, "")


def test_every_cel_rule_compiles(schema: Schema) -> None:
    rules = _rules(schema)
    assert len(rules) >= 12
    for rule in rules.values():
        assert _CEL.compile(rule) is not None, rule


def test_a_valid_spec_passes_the_api_server_checks(schema: Schema) -> None:
    assert api_server_errors(raw_spec(), schema) == []
    blue_green = raw_spec(strategy={"type": "BlueGreen", "blueGreen": {"autoPromote": False}})
    assert api_server_errors(blue_green, schema) == []
    classifier = raw_spec(validation={"input": "great", "expected": {"label": "POSITIVE"}})
    classifier["runtime"]["task"] = "text-classification"
    assert api_server_errors(classifier, schema) == []
    reranker = raw_spec(validation={
        "input": "where is john", "documents": ["john is in paris", "a dog"],
        "expected": {"order": [0, 1], "scores": [0.9, 0.1], "scoreTolerance": 0.05}})
    reranker["runtime"]["task"] = "reranking"
    assert api_server_errors(reranker, schema) == []
    tagger = raw_spec(validation={"input": "John lives in Paris", "expected": {"entities": [
        {"label": "PER", "start": 0, "end": 4}, {"label": "LOC", "start": 14, "end": 19}]}})
    tagger["runtime"]["task"] = "token-classification"
    assert api_server_errors(tagger, schema) == []
    generator = raw_spec(validation={
        "input": "the capital of France is", "maxTokens": 8, "expected": {"pattern": "Paris"}})
    generator["runtime"].update(task="text-generation", generation={"maxConcurrent": 2})
    assert api_server_errors(generator, schema) == []


def _server_path(field: str) -> str:
    # "spec.model.sha256['a.bin']" -> ".spec.model.sha256"
    return "." + field.split("[")[0]


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    INVALID,
    ids=[f"{c[0]}={c[1]!r}"[:60] for c in INVALID],
)
def test_invalid_spec_is_refused_by_the_api_server_naming_the_field(
    schema: Schema, path: str, value: Any, field: str, says: tuple[str, ...]
) -> None:
    errors = api_server_errors(edited(path, value), schema)
    assert errors, "accepted by the API server"
    assert any(e.startswith(_server_path(field)) for e in errors), errors
