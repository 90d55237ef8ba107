"""The validation judgement: does the model's answer on the known input match `expected`?

The runtime applies it to its own answer before it reports ready; the operator applies it
to each pod's answer over HTTP before promotion, so a pod that lied about its own check
still cannot take traffic. One verdict, computed the same way on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy_contract.config import Expected
from modeldeploy_contract.status import ValidationResult


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is all zeros."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm > 0 else 0.0


def check_label(expected: Expected, label: str, score: float | None = None) -> ValidationResult:
    """Classification passes when the predicted label equals the expected one exactly."""
    if label == expected.label:
        return ValidationResult(passed=True, message=f"label {label!r} as expected", score=score)
    probability = f" (p={score:.4f})" if score is not None else ""
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: expected label {expected.label!r}, the model answered "
            f"{label!r}{probability}; the model version or validation.expected is wrong"
        ),
        score=score,
    )


def check_embedding(expected: Expected, embedding: Sequence[float]) -> ValidationResult:
    """Embedding passes when cosine(expected, actual) >= minCosineSimilarity."""
    wanted = expected.embedding or []
    if len(wanted) != len(embedding):
        return ValidationResult(
            passed=False,
            message=(
                f"validation failed: expected an embedding of {len(wanted)} "
                f"dimensions, the model produced {len(embedding)}; update validation.expected"
            ),
        )
    score = cosine(wanted, embedding)
    if score >= expected.min_cosine_similarity:
        return ValidationResult(
            passed=True,
            message=f"cosine similarity {score:.6f} >= {expected.min_cosine_similarity}",
            score=score,
        )
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: cosine similarity {score:.6f} < minCosineSimilarity "
            f"{expected.min_cosine_similarity}; the model version or validation.expected is wrong"
        ),
        score=score,
    )


def infer_request(text: str) -> dict[str, Any]:
    """The Open Inference Protocol v2 request body for one text input."""
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [data]


def _first_row(output: Mapping[str, Any]) -> list[Any]:
    values = _flatten(output.get("data", []))
    shape = output.get("shape") or [len(values)]
    width = int(shape[-1]) if len(shape) > 1 else len(values)
    return values[:width]


def check_answer(expected: Expected, response: Mapping[str, Any]) -> ValidationResult:
    """Judge an OIP v2 inference response to `infer_request(validation.input)`."""
    outputs = response.get("outputs") or []
    if expected.label is not None:
        labels = next((o for o in outputs if o.get("datatype") == "BYTES"), None)
        if labels is None:
            return ValidationResult(passed=False, message="the answer has no BYTES label output")
        got = _first_row(labels)
        return check_label(expected, str(got[0]) if got else "")
    # By name: a classifier's float "score" output is no embedding.
    vectors = next((o for o in outputs if o.get("name") == "embedding"), None)
    if vectors is None:
        return ValidationResult(passed=False, message="the answer has no 'embedding' output")
    return check_embedding(expected, [float(x) for x in _first_row(vectors)])
