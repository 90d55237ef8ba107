"""The spec models: valid specs parse with the documented defaults; invalid ones are refused
with one line per problem that names the field, the value and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_operator.api import crdgen, docs
from modeldeploy_operator.api.spec import InvalidSpecError, ModelDeploymentSpec, parse_spec
from modeldeploy_operator.api.status import Phase

from .conftest import raw_spec

DELETE = object()


def edited(path: str, value: Any) -> dict[str, Any]:
    """The base spec with the dotted `path` set to `value` (or removed for DELETE)."""
    raw = raw_spec()
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = copy.deepcopy(value)
    return raw


# (edit path, value, the field the error must name, what else the line must say)
INVALID: list[tuple[str, Any, str, tuple[str, ...]]] = [
    ("replicas", -1, "spec.replicas", ("-1", ">= 0")),
    ("replicas", "three", "spec.replicas", ("'three'", "integer")),
    ("model.version", "V2_bad", "spec.model.version", ("'V2_bad'", "DNS label")),
    ("model.version", "", "spec.model.version", ("''", "must not be empty")),
    ("model.name", "MiniLM", "spec.model.name", ("'MiniLM'", "lowercase")),
    (
        "model.source",
        {"s3": {"bucket": "models"}, "huggingFace": {"repo": "org/model"}},
        "spec.model.source",
        ("got both", "keep the one"),
    ),
    ("model.source", {}, "spec.model.source", ("got neither", "exactly one of s3 or huggingFace")),
    ("model.source.s3.bucket", "Bad_Bucket", "spec.model.source.s3.bucket", ("'Bad_Bucket'",)),
    ("model.source.s3.endpoint", "ftp://x", "spec.model.source.s3.endpoint", ("'ftp://x'", "http")),
    (
        "model.source.s3.credentialsSecret",
        "Bad_Secret",
        "spec.model.source.s3.credentialsSecret",
        ("'Bad_Secret'", "object name"),
    ),
    (
        "model.source",
        {"huggingFace": {"repo": "not a repo"}},
        "spec.model.source.huggingFace.repo",
        ("'not a repo'", "org/model"),
    ),
    ("model.sha256", {"a.bin": "xyz"}, "spec.model.sha256['a.bin']", ("'xyz'", "64 lowercase hex")),
    (
        "model.sha256",
        {"../etc/passwd": "a" * 64},
        "spec.model.sha256",
        ("'../etc/passwd'", "relative"),
    ),
    ("runtime.task", "translation", "spec.runtime.task", ("'translation'", "'embedding'")),
    ("runtime.device", "tpu", "spec.runtime.device", ("'tpu'", "'cuda'")),
    ("runtime.port", 80, "spec.runtime.port", ("80", ">= 1024")),
    (
        "runtime.resources",
        {"gpu": 1},
        "spec.runtime.resources.gpu",
        ("(1)", "set device to 'cuda'"),
    ),
    (
        "runtime.resources",
        {"requests": {"memory": "lots"}},
        "spec.runtime.resources.requests.memory",
        ("'lots'", "512Mi"),
    ),
    ("runtime.env", [{"name": "1 BAD"}], "spec.runtime.env[0].name", ("'1 BAD'", "HF_HOME")),
    ("runtime.warmup", {"inputs": []}, "spec.runtime.warmup.inputs", ("0 items", "at least 1")),
    (
        "strategy",
        {"rolling": {"maxSurge": 0, "maxUnavailable": 0}},
        "spec.strategy.rolling",
        ("both 0", "set maxSurge to at least 1"),
    ),
    (
        "strategy",
        {"rolling": {"maxSurge": "50"}},
        "spec.strategy.rolling.maxSurge",
        ("'50'", "percentage such as 25%"),
    ),
    (
        "strategy",
        {"rolling": {"maxUnavailable": -1}},
        "spec.strategy.rolling.maxUnavailable",
        ("-1",),
    ),
    (
        "strategy",
        {"type": "Rolling", "blueGreen": {}},
        "spec.strategy.blueGreen",
        ("type: BlueGreen",),
    ),
    ("strategy", {"type": "BlueGreen", "rolling": {}}, "spec.strategy.rolling", ("type: Rolling",)),
    ("strategy", {"type": "Canary"}, "spec.strategy.type", ("'Canary'", "'BlueGreen'")),
    (
        "strategy",
        {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": -5}},
        "spec.strategy.blueGreen.scaleDownDelaySeconds",
        ("-5", ">= 0"),
    ),
    (
        "validation.expected",
        {"label": "POSITIVE", "embedding": [0.1]},
        "spec.validation.expected",
        ("exactly one of label, labels, embedding, order, entities, text, contains or pattern",),
    ),
    (
        "validation",
        {"input": "q", "expected": {"text": "a completion"}},
        "spec.validation.expected.text",
        ("needs runtime.task text-generation", "'embedding'"),
    ),
    (
        "validation",
        {"input": "q", "maxTokens": 8, "expected": {"embedding": [0.1]}},
        "spec.validation.maxTokens",
        ("text-generation", "remove it"),
    ),
    (
        "runtime.generation",
        {"maxConcurrent": 2},
        "spec.runtime.generation",
        ("only task text-generation", "'embedding'"),
    ),
    (
        "validation",
        {"input": "q", "documents": ["a", "b"], "expected": {"order": [1, 0]}},
        "spec.validation.expected.order",
        ("needs runtime.task reranking", "'embedding'", "expected.embedding"),
    ),
    (
        "validation",
        {"input": "q", "expected": {"order": [0]}},
        "spec.validation.documents",
        ("validation.documents", "expected.order"),
    ),
    (
        "validation",
        {"input": "q", "expected": {"entities": [{"label": "PER", "start": 0, "end": 1}]}},
        "spec.validation.expected.entities",
        ("needs runtime.task token-classification",),
    ),
    (
        "validation.expected",
        {"labels": ["a"], "scores": [0.5]},
        "spec.validation.expected.scores",
        ("needs order",),
    ),
    (
        "validation.expected",
        {"label": "POSITIVE"},
        "spec.validation.expected.label",
        ("'embedding'", "give expected.embedding instead"),
    ),
    (
        "validation.expected.minCosineSimilarity",
        1.5,
        "spec.validation.expected.minCosineSimilarity",
        ("1.5", "<= 1.0"),
    ),
    ("validation.timeoutSeconds", 0, "spec.validation.timeoutSeconds", ("0", ">= 1")),
    ("cache", {"volume": "hostPath"}, "spec.cache.hostPath", ("required", "node directory")),
    (
        "cache",
        {"volume": "persistentVolumeClaim"},
        "spec.cache.claimName",
        ("required", "existing PVC"),
    ),
    ("cache.path", "relative/path", "spec.cache.path", ("'relative/path'", "absolute path")),
    (
        "cache",
        {"volume": "hostPath", "hostPath": "/models", "sizeLimit": "0Gi"},
        "spec.cache.sizeLimit",
        ("'0Gi'", "more than 0 bytes"),
    ),
    (
        "cache",
        {"volume": "hostPath", "hostPath": "/models", "sizeLimit": "-1Gi"},
        "spec.cache.sizeLimit",
        ("'-1Gi'", "more than 0 bytes"),
    ),
    ("progressDeadlineSeconds", 5, "spec.progressDeadlineSeconds", ("5", ">= 30")),
    ("stageDeadlineSeconds.fetch", 0, "spec.stageDeadlineSeconds.fetch", ("0", ">= 1")),
    (
        "stageDeadlineSeconds.load",
        600,
        "spec.stageDeadlineSeconds.load",
        ("600", "below progressDeadlineSeconds (600)", "raise progressDeadlineSeconds"),
    ),
    (
        "runtime.batching",
        {"maxWaitMilliseconds": 5000},
        "spec.runtime.batching.maxWaitMilliseconds",
        ("5000", "<= 1000"),
    ),
    ("replica", 3, "spec.replica", ("unknown field", "spelling")),
    ("model", DELETE, "spec.model", ("required", "set it")),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "says"), INVALID, ids=[f"{c[0]}={c[1]!r}"[:60] for c in INVALID]
)
def test_invalid_spec_is_refused_naming_field_value_and_fix(
    path: str, value: Any, field: str, says: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(edited(path, value))
    lines = caught.value.errors
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(field + ":") or line.startswith(field + "."), line
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert str(caught.value) == line


def test_at_least_fifteen_distinct_fields_are_covered() -> None:
    assert len({field for _, _, field, _ in INVALID}) >= 15


def test_every_problem_of_a_spec_is_reported_at_once() -> None:
    raw = edited("replicas", -1)
    raw["runtime"]["port"] = 80
    raw["model"]["version"] = "Bad Version"
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert sorted(line.split(":")[0] for line in caught.value.errors) == [
        "spec.model.version",
        "spec.replicas",
        "spec.runtime.port",
    ]


def test_error_never_echoes_a_secret_value() -> None:
    # Only Secret names are referenced by the spec; a key pasted in the wrong place is
    # refused as an unknown field without repeating it.
    raw = edited("model.source.s3.awsSecretAccessKey", "wJalrXUtnFEMI/K7MDENG")
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert "wJalrXUtnFEMI" not in str(caught.value)
    assert "spec.model.source.s3.awsSecretAccessKey: unknown field" in str(caught.value)


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(
        {
            "model": {"name": "minilm", "version": "v1", "source": {"s3": {"bucket": "models"}}},
            "runtime": {"task": "embedding"},
        }
    )
    assert spec.replicas == 1
    assert spec.strategy.type == "Rolling"
    rolling = spec.strategy.rolling_settings
    assert (rolling.max_surge, rolling.max_unavailable) == (1, 0)
    blue_green = spec.strategy.blue_green_settings
    assert blue_green.auto_promote is True
    assert blue_green.preview_service is True
    assert spec.progress_deadline_seconds == 600
    assert spec.runtime.device == "cpu"
    assert spec.runtime.port == 8080
    assert spec.cache.volume == "emptyDir"
    assert spec.validation is None


@pytest.mark.parametrize("value", [0, 3, "25%", "0%"])
def test_max_unavailable_takes_a_count_or_a_percentage(value: int | str) -> None:
    spec = parse_spec(edited("strategy", {"rolling": {"maxSurge": 1, "maxUnavailable": value}}))
    assert spec.strategy.rolling_settings.max_unavailable == value


def test_hugging_face_source_and_text_classification_label_parse() -> None:
    raw = edited("model.source", {"huggingFace": {"repo": "org/model", "revision": "abc123"}})
    raw["runtime"]["task"] = "text-classification"
    raw["validation"] = {"input": "great", "expected": {"label": "POSITIVE"}}
    spec = parse_spec(raw)
    assert spec.model.source.hugging_face is not None
    assert spec.model.source.hugging_face.revision == "abc123"
    assert spec.validation is not None and spec.validation.expected.label == "POSITIVE"


def test_spec_round_trips_through_its_camel_case_wire_form() -> None:
    spec = parse_spec(raw_spec(strategy={"type": "BlueGreen", "blueGreen": {"autoPromote": False}}))
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["strategy"]["blueGreen"]["autoPromote"] is False
    assert "progressDeadlineSeconds" in wire
    assert ModelDeploymentSpec.model_validate(wire) == spec


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_spec_table_is_the_one_generated_from_the_models() -> None:
    text = README.read_text()
    assert docs.splice(text) == text, (
        "README spec table is stale: run python -m modeldeploy_operator.api.docs --write README.md"
    )


def test_readme_table_lists_every_spec_field() -> None:
    text = README.read_text()
    paths = [row[0] for row in docs.rows()]
    assert len(paths) > 60
    for path in paths:
        assert f"| {path} |" in text, path
    for leaf in ("`spec.strategy.rolling.maxSurge`", "`spec.validation.expected.embedding`"):
        assert leaf in paths


def test_readme_explains_every_phase_and_printer_column() -> None:
    text = README.read_text()
    for phase in Phase:
        assert f"| `{phase.value}` |" in text, phase
    for column in crdgen.PRINTER_COLUMNS:
        assert f"| {column['name'].upper()} |" in text, column["name"]
