"""Pure checks of the model's answer on the known input against the expected output."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from modeldeploy_runtime.config import Expected


class ValidationResult(BaseModel):
    """The outcome reported in /status: passed is None when validation was skipped."""

    model_config = ConfigDict(frozen=True)

    passed: bool | None
    message: str
    score: float | None = None


SKIPPED = ValidationResult(passed=None, message="no validation configured; skipped")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is all zeros."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm > 0 else 0.0


def check_label(expected: Expected, label: str, score: float) -> ValidationResult:
    """Classification passes when the predicted label equals the expected one exactly."""
    if label == expected.label:
        return ValidationResult(passed=True, message=f"label {label!r} as expected", score=score)
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: expected label {expected.label!r}, the model answered "
            f"{label!r} (p={score:.4f}); the model version or validation.expected is wrong"
        ),
        score=score,
    )


def check_embedding(expected: Expected, embedding: Sequence[float]) -> ValidationResult:
    """Embedding passes when cosine(expected, actual) >= minCosineSimilarity."""
    assert expected.embedding is not None
    if len(expected.embedding) != len(embedding):
        return ValidationResult(
            passed=False,
            message=(
                f"validation failed: expected an embedding of {len(expected.embedding)} "
                f"dimensions, the model produced {len(embedding)}; update validation.expected"
            ),
        )
    score = cosine(expected.embedding, embedding)
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
