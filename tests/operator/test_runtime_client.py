"""runtime_client.judge: the operator's own verdict on a pod's inference answer."""

from __future__ import annotations

from modeldeploy_operator.runtime_client import cosine, infer_request, judge
from modeldeploy_operator.spec import ExpectedOutput


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


def test_the_expected_label_passes_and_another_fails_naming_both() -> None:
    expected = ExpectedOutput(label="POSITIVE")
    assert judge(expected, label_answer("POSITIVE"))[0] is True
    passed, message = judge(expected, label_answer("NEGATIVE"))
    assert passed is False
    assert "'POSITIVE'" in message and "'NEGATIVE'" in message


def test_an_embedding_passes_above_the_cosine_threshold_flat_or_nested() -> None:
    expected = ExpectedOutput(embedding=[1.0, 0.0, 0.0], min_cosine_similarity=0.95)
    assert judge(expected, embedding_answer([0.99, 0.05, 0.0]))[0] is True
    assert judge(expected, embedding_answer([0.99, 0.05, 0.0], nested=True))[0] is True
    passed, message = judge(expected, embedding_answer([0.0, 1.0, 0.0]))
    assert passed is False and "below the required 0.95" in message


def test_an_embedding_of_the_wrong_size_fails_with_both_sizes() -> None:
    expected = ExpectedOutput(embedding=[1.0, 0.0])
    passed, message = judge(expected, embedding_answer([1.0, 0.0, 0.0]))
    assert passed is False and "2 values, got 3" in message


def test_an_answer_without_the_needed_output_fails() -> None:
    assert judge(ExpectedOutput(label="X"), {"outputs": []})[0] is False
    assert judge(ExpectedOutput(embedding=[1.0]), label_answer("X") | {"outputs": []})[0] is False


def test_cosine_of_a_zero_vector_is_zero_not_an_error() -> None:
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_infer_request_is_one_bytes_text_input() -> None:
    assert infer_request("hi") == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]
    }
