"""Per-task validation in the contract: which expected key fits which task, the request the
operator sends, and the verdicts on reranking, multi-label and NER answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modeldeploy_contract import judge
from modeldeploy_contract.config import Expected, RuntimeConfig, Validation
from pydantic import ValidationError

DOCS = ["a", "b", "c"]


def _config(task: str, validation: dict[str, Any]) -> RuntimeConfig:
    return RuntimeConfig.model_validate({
        "model": {"name": "m", "version": "v", "source": {"s3": {"bucket": "b"}}},
        "task": task, "validation": validation})


@pytest.mark.parametrize(("task", "expected", "fits"), [
    ("reranking", {"order": [1, 0, 2]}, True),
    ("embedding", {"order": [1, 0, 2]}, False),
    ("text-classification", {"labels": ["x"]}, True),
    ("reranking", {"labels": ["x"]}, False),
    ("token-classification", {"entities": [{"label": "PER", "start": 0, "end": 1}]}, True),
    ("text-classification", {"entities": [{"label": "PER", "start": 0, "end": 1}]}, False),
])
def test_an_expected_key_that_does_not_fit_the_task_is_refused_by_name(
    task: str, expected: dict[str, Any], fits: bool,
) -> None:
    validation: dict[str, Any] = {"input": "q", "expected": expected}
    if "order" in expected:
        validation["documents"] = DOCS
    if fits:
        _config(task, validation)
        return
    with pytest.raises(ValidationError, match=rf"validation\.expected\.{next(iter(expected))} "
                                              f"does not fit task '{task}'"):
        _config(task, validation)


def test_order_needs_one_index_per_document() -> None:
    with pytest.raises(ValidationError, match=r"3 validation\.documents"):
        Validation.model_validate({"input": "q", "documents": DOCS,
                                   "expected": {"order": [0, 1]}})
    with pytest.raises(ValidationError, match="each document index once"):
        Expected(order=[0, 0, 1])


def test_the_reranking_request_sends_the_query_and_the_documents() -> None:
    validation = Validation.model_validate({"input": "q", "documents": DOCS,
                                            "expected": {"order": [2, 0, 1]}})
    body = judge.validation_request(validation)
    assert [(i["name"], i["shape"], i["data"]) for i in body["inputs"]] == [
        ("query", [1], ["q"]), ("documents", [3], DOCS)]


def _scores(values: list[float]) -> dict[str, Any]:
    return {"outputs": [{"name": "score", "datatype": "FP32", "shape": [len(values)],
                         "data": values}]}


def test_the_order_verdict_sorts_scores_and_checks_the_tolerance() -> None:
    expected = Expected(order=[2, 0, 1], scores=[0.5, 0.1, 0.9], score_tolerance=0.01)
    assert judge.check_answer(expected, _scores([0.5, 0.1, 0.9])).passed is True
    wrong = judge.check_answer(expected, _scores([0.9, 0.1, 0.5]))
    assert wrong.passed is False and "[0, 2, 1]" in wrong.message
    off = judge.check_answer(expected, _scores([0.45, 0.1, 0.9]))
    assert off.passed is False and "scoreTolerance" in off.message
    assert judge.check_answer(Expected(order=[0]), {"outputs": []}).passed is False


def test_the_multi_label_verdict_compares_the_labels_above_the_threshold() -> None:
    answer = {"outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [1, 3], "data": [["x", "y", "z"]]},
        {"name": "score", "datatype": "FP32", "shape": [1, 3], "data": [[0.9, 0.6, 0.2]]}]}
    assert judge.check_answer(Expected(labels=["y", "x"]), answer).passed is True
    assert judge.check_answer(Expected(labels=["x"]), answer).passed is False
    assert judge.check_answer(Expected(labels=["x"], label_threshold=0.7), answer).passed
    validation = Validation.model_validate({"input": "t", "expected": {"labels": ["x"]}})
    assert judge.validation_request(validation)["parameters"] == {"top_k": 0}


def test_the_entity_verdict_compares_label_and_offsets() -> None:
    found = [{"entity_group": "PER", "score": 0.9, "word": "john", "start": 0, "end": 4}]
    answer = {"outputs": [{"name": "entities", "datatype": "BYTES", "shape": [1],
                           "data": [json.dumps(found)]}]}
    same = Expected.model_validate({"entities": [{"label": "PER", "start": 0, "end": 4}]})
    other = Expected.model_validate({"entities": [{"label": "LOC", "start": 0, "end": 4}]})
    assert judge.check_answer(same, answer).passed is True
    assert judge.check_answer(other, answer).passed is False


@pytest.mark.parametrize(("expected", "answer", "passed"), [
    ({"text": " paris."}, " paris.", True),
    ({"text": " paris."}, " paris. and", False),
    ({"contains": "paris"}, "in paris, france", True),
    ({"contains": "paris"}, "in berlin", False),
    ({"pattern": r"^\s*paris\b"}, " paris is", True),
    ({"pattern": r"^\s*paris\b"}, "not paris", False),
])
def test_the_generation_verdict_checks_exact_text_substring_or_pattern(
    expected: dict[str, Any], answer: str, passed: bool,
) -> None:
    verdict = judge.check_text(Expected.model_validate(expected), answer)
    assert verdict.passed is passed
    if not passed:
        assert repr(answer) in verdict.message and "validation failed" in verdict.message


def test_the_generation_request_is_greedy_with_the_golden_token_count() -> None:
    validation = Validation.model_validate(
        {"input": "the capital of france is", "maxTokens": 5, "expected": {"contains": "x"}})
    body = judge.validation_request(validation)
    assert body["inputs"][0]["data"] == ["the capital of france is"]
    assert body["parameters"] == {"max_tokens": 5, "temperature": 0}
    unset = Validation.model_validate({"input": "q", "expected": {"text": "x"}})
    assert judge.validation_request(unset)["parameters"]["max_tokens"] == judge.VALIDATION_TOKENS


def test_the_operator_reads_the_generated_text_output() -> None:
    expected = Expected.model_validate({"pattern": "par+is"})
    good = {"outputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                         "data": ["to parris"]}]}
    assert judge.check_answer(expected, good).passed is True
    assert judge.check_answer(expected, {"outputs": []}).passed is False


def test_generation_keys_fit_only_the_generation_task() -> None:
    _config("text-generation", {"input": "q", "expected": {"pattern": "a"}})
    with pytest.raises(ValidationError, match=r"validation\.expected\.text does not fit task "
                                              "'embedding'"):
        _config("embedding", {"input": "q", "expected": {"text": "a"}})
    with pytest.raises(ValidationError, match=r"validation\.maxTokens is only for text"):
        Validation.model_validate({"input": "q", "maxTokens": 3, "expected": {"label": "a"}})
    with pytest.raises(ValidationError, match="not a regular expression"):
        Expected.model_validate({"pattern": "(unclosed"})
