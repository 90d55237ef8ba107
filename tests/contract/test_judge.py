"""The validation verdict both sides apply: the runtime to itself, the operator to each pod."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_contract import judge
from modeldeploy_contract.config import Expected


def label_answer(label: str) -> dict[str, object]:
    return {
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": [label]},
            {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.97]},
        ]
    }


def embedding_answer(values: list[float], nested: bool = False) -> dict[str, object]:
    data: object = [values] if nested else values
    return {"outputs": [{"name": "embedding", "datatype": "FP32", "shape": [1, len(values)],
                         "data": data}]}


def test_label_check_passes_only_on_the_exact_label() -> None:
    expected = Expected(label="POSITIVE")
    assert judge.check_label(expected, "POSITIVE", 0.9).passed is True
    failed = judge.check_label(expected, "positive", 0.9)
    assert failed.passed is False
    assert "expected label 'POSITIVE'" in failed.message and "'positive'" in failed.message


def test_embedding_check_uses_the_cosine_threshold() -> None:
    expected = Expected(embedding=[1.0, 0.0], min_cosine_similarity=0.99)
    assert judge.check_embedding(expected, [2.0, 0.01]).passed is True
    result = judge.check_embedding(expected, [1.0, 1.0])
    assert result.passed is False
    assert result.score == pytest.approx(math.sqrt(0.5))
    assert "dimensions" in (judge.check_embedding(expected, [1.0]).message)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=16).filter(
    lambda v: sum(x * x for x in v) > 1e-6))
def test_cosine_is_one_with_itself_and_minus_one_with_its_opposite(vector: list[float]) -> None:
    assert judge.cosine(vector, vector) == pytest.approx(1.0)
    assert judge.cosine(vector, [-x for x in vector]) == pytest.approx(-1.0)


def test_cosine_of_a_zero_vector_is_zero_not_an_error() -> None:
    assert judge.cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_an_answered_label_is_judged_like_the_runtime_judges_its_own() -> None:
    expected = Expected(label="POSITIVE")
    assert judge.check_answer(expected, label_answer("POSITIVE")).passed is True
    verdict = judge.check_answer(expected, label_answer("NEGATIVE"))
    assert verdict.passed is False
    assert verdict.message == judge.check_label(expected, "NEGATIVE").message


def test_an_answered_embedding_passes_above_the_threshold_flat_or_nested() -> None:
    expected = Expected(embedding=[1.0, 0.0, 0.0], min_cosine_similarity=0.95)
    assert judge.check_answer(expected, embedding_answer([0.99, 0.05, 0.0])).passed is True
    assert judge.check_answer(
        expected, embedding_answer([0.99, 0.05, 0.0], nested=True)).passed is True
    verdict = judge.check_answer(expected, embedding_answer([0.0, 1.0, 0.0]))
    assert verdict.passed is False and "< minCosineSimilarity 0.95" in verdict.message


def test_an_answered_embedding_of_the_wrong_size_names_both_sizes() -> None:
    verdict = judge.check_answer(Expected(embedding=[1.0, 0.0]), embedding_answer([1.0, 0, 0]))
    assert verdict.passed is False
    assert "2 dimensions" in verdict.message and "produced 3" in verdict.message


def test_an_answer_without_the_needed_output_fails() -> None:
    assert judge.check_answer(Expected(label="X"), {"outputs": []}).passed is False
    assert judge.check_answer(Expected(embedding=[1.0]), label_answer("X")).passed is False


def test_infer_request_is_one_bytes_text_input() -> None:
    assert judge.infer_request("hi") == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]
    }
