"""The runtime config: the operator's wire format parses; mistakes are named."""

from __future__ import annotations

import json

import pytest
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime.config import load_config, parse_config
from modeldeploy_runtime.errors import ConfigError

CONTRACT_EXAMPLE = {
    "model": {
        "name": "minilm", "version": "v1",
        "source": {"s3": {"bucket": "models", "prefix": "minilm/v1/",
                          "endpoint": "http://127.0.0.1:9000", "region": "us-east-1"}},
        "sha256": {"model.safetensors": "ab" * 32},
    },
    "task": "embedding", "device": "cpu", "dtype": "float32", "allowPickle": False,
    "warmup": {"inputs": ["hello world"], "iterations": 3},
    "validation": {"input": "some text",
                   "expected": {"embedding": [0.1, 0.2], "minCosineSimilarity": 0.99},
                   "timeoutSeconds": 60},
    "cache": {"path": "/var/cache/modeldeploy"},
}


def test_the_contract_example_parses_with_camel_case_keys() -> None:
    config = parse_config(json.dumps(CONTRACT_EXAMPLE))
    assert config.model.source.s3 is not None
    assert config.model.source.s3.endpoint == "http://127.0.0.1:9000"
    assert config.validation is not None
    assert config.validation.expected.min_cosine_similarity == 0.99
    assert config.validation.timeout_seconds == 60
    assert config.allow_pickle is False


def test_hugging_face_source_and_label_validation_parse() -> None:
    doc = dict(CONTRACT_EXAMPLE, task="text-classification",
               validation={"input": "great", "expected": {"label": "POSITIVE"}})
    doc["model"] = dict(doc["model"], source={"huggingFace": {
        "repo": "org/name", "revision": "main", "include": ["*.json"], "exclude": []}})
    config = parse_config(json.dumps(doc))
    assert config.model.source.hugging_face is not None
    assert config.model.source.hugging_face.include == ["*.json"]
    assert config.validation is not None and config.validation.expected.label == "POSITIVE"


def test_null_validation_means_skip() -> None:
    config = parse_config(json.dumps(dict(CONTRACT_EXAMPLE, validation=None)))
    assert config.validation is None


def test_unknown_key_is_rejected_by_its_dotted_name() -> None:
    doc = json.loads(json.dumps(CONTRACT_EXAMPLE))
    doc["warmup"]["iteratons"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'warmup\.iteratons'"):
        parse_config(json.dumps(doc))


def test_snake_case_on_the_wire_is_an_unknown_key() -> None:
    with pytest.raises(ConfigError, match="allow_pickle"):
        parse_config(json.dumps(dict(CONTRACT_EXAMPLE, allow_pickle=True)))


def test_two_sources_at_once_are_refused() -> None:
    doc = json.loads(json.dumps(CONTRACT_EXAMPLE))
    doc["model"]["source"]["huggingFace"] = {"repo": "org/name"}
    with pytest.raises(ConfigError, match="exactly one of 's3' or 'huggingFace'"):
        parse_config(json.dumps(doc))


def test_bad_task_names_the_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"task: .*'summarise'"):
        parse_config(json.dumps(dict(CONTRACT_EXAMPLE, task="summarise")))


def test_missing_file_says_how_to_point_at_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="MODELDEPLOY_CONFIG"):
        load_config(tmp_path / "absent.json")


def test_config_model_is_frozen() -> None:
    config = RuntimeConfig.model_validate(CONTRACT_EXAMPLE)
    with pytest.raises(ValueError):
        config.task = "text-classification"  # type: ignore[misc]
