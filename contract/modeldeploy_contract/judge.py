"""The validation judgement: does the model's answer on the known input match `expected`?

The runtime applies it to its own answer before it reports ready; the operator applies it
to each pod's answer over HTTP before promotion, so a pod that lied about its own check
still cannot take traffic. One verdict, computed the same way on both sides.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy_contract.config import Expected, Validation
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


def check_labels(expected: Expected, ranked: Sequence[tuple[str, float]]) -> ValidationResult:
    """Multi-label passes when the labels scoring >= labelThreshold are exactly the expected."""
    wanted = set(expected.labels or [])
    got = {label for label, score in ranked if score >= expected.label_threshold}
    if got == wanted:
        return ValidationResult(passed=True, message=f"labels {sorted(got)} as expected")
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: expected labels {sorted(wanted)} scoring >= "
            f"{expected.label_threshold}, the model gave {sorted(got)}; the model version or "
            "validation.expected.labels is wrong"
        ),
    )


def check_order(expected: Expected, scores: Sequence[float]) -> ValidationResult:
    """Reranking passes when sorting the documents by score gives the expected order (and,
    when expected.scores is set, every score is within scoreTolerance)."""
    wanted = list(expected.order or [])
    if len(scores) != len(wanted):
        return ValidationResult(
            passed=False,
            message=f"validation failed: {len(wanted)} documents sent, {len(scores)} scores back",
        )
    got = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if got != wanted:
        return ValidationResult(
            passed=False,
            message=(
                f"validation failed: expected document order {wanted}, the model ranked {got} "
                f"(scores {[round(s, 4) for s in scores]}); the model version or "
                "validation.expected.order is wrong"
            ),
        )
    if expected.scores is not None:
        worst = max(abs(a - b) for a, b in zip(expected.scores, scores, strict=True))
        if worst > expected.score_tolerance:
            return ValidationResult(
                passed=False,
                message=(
                    f"validation failed: a score differs by {worst:.6f} > scoreTolerance "
                    f"{expected.score_tolerance} (got {[round(s, 6) for s in scores]})"
                ),
                score=worst,
            )
    return ValidationResult(passed=True, message=f"document order {got} as expected")


def check_entities(
    expected: Expected, entities: Sequence[Mapping[str, Any]]
) -> ValidationResult:
    """NER passes when the (label, start, end) of the found entities equal the expected."""
    wanted = sorted((e.label, e.start, e.end) for e in expected.entities or [])
    got = sorted(
        (str(e.get("entity_group", e.get("entity", ""))), int(e["start"]), int(e["end"]))
        for e in entities
    )
    if got == wanted:
        return ValidationResult(passed=True, message=f"{len(got)} entities as expected")
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: expected entities {wanted}, the model found {got}; the model "
            "version or validation.expected.entities is wrong"
        ),
    )


# Tokens the golden prompt generates when validation.maxTokens is unset.
VALIDATION_TOKENS = 16
GENERATED_KINDS = ("text", "contains", "pattern")


def check_text(expected: Expected, text: str) -> ValidationResult:
    """Text generation passes when the greedy completion equals expected.text exactly,
    contains expected.contains, or has a match of expected.pattern (re.search)."""
    if expected.text is not None:
        passed, wanted = text == expected.text, f"exactly {expected.text!r}"
    elif expected.contains is not None:
        passed, wanted = expected.contains in text, f"containing {expected.contains!r}"
    else:
        pattern = expected.pattern or ""
        passed, wanted = re.search(pattern, text) is not None, f"matching /{pattern}/"
    if passed:
        return ValidationResult(passed=True, message=f"completion {wanted} as expected")
    return ValidationResult(
        passed=False,
        message=(
            f"validation failed: expected a greedy completion {wanted}, the model generated "
            f"{text[:200]!r}; the model version or validation.expected is wrong"
        ),
    )


def infer_request(text: str) -> dict[str, Any]:
    """The Open Inference Protocol v2 request body for one text input."""
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}


def validation_request(validation: Validation) -> dict[str, Any]:
    """The OIP v2 request that `check_answer(validation.expected, ...)` judges the answer to."""
    if validation.documents is not None:
        docs = list(validation.documents)
        return {"inputs": [
            {"name": "query", "datatype": "BYTES", "shape": [1], "data": [validation.input]},
            {"name": "documents", "datatype": "BYTES", "shape": [len(docs)], "data": docs},
        ]}
    body = infer_request(validation.input)
    if validation.expected.kind in GENERATED_KINDS:
        # Greedy, so every correct replica gives the same text.
        body["parameters"] = {
            "max_tokens": validation.max_tokens or VALIDATION_TOKENS, "temperature": 0}
    if validation.expected.labels is not None:
        body["parameters"] = {"top_k": 0}  # every label with its score
    return body


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


def _output(response: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    outputs = response.get("outputs") or []
    found: Mapping[str, Any] | None = next((o for o in outputs if o.get("name") == name), None)
    return found


def check_answer(expected: Expected, response: Mapping[str, Any]) -> ValidationResult:
    """Judge an OIP v2 inference response to `validation_request(validation)`."""
    outputs = response.get("outputs") or []
    kind = expected.kind
    if kind == "label":
        labels = next((o for o in outputs if o.get("datatype") == "BYTES"), None)
        if labels is None:
            return ValidationResult(passed=False, message="the answer has no BYTES label output")
        got = _first_row(labels)
        return check_label(expected, str(got[0]) if got else "")
    if kind == "labels":
        names, scores = _output(response, "label"), _output(response, "score")
        if names is None or scores is None:
            return ValidationResult(passed=False, message="the answer has no label/score outputs")
        pairs = zip(_first_row(names), _first_row(scores), strict=False)
        return check_labels(expected, [(str(n), float(s)) for n, s in pairs])
    if kind == "order":
        scored = _output(response, "score")
        if scored is None:
            return ValidationResult(passed=False, message="the answer has no 'score' output")
        return check_order(expected, [float(x) for x in _flatten(scored.get("data", []))])
    if kind == "entities":
        found = _output(response, "entities")
        if found is None:
            return ValidationResult(passed=False, message="the answer has no 'entities' output")
        rows = _flatten(found.get("data", []))
        try:
            entities = json.loads(str(rows[0])) if rows else []
        except ValueError:
            return ValidationResult(passed=False, message="the 'entities' output is not JSON")
        return check_entities(expected, entities)
    if kind in GENERATED_KINDS:
        generated = _output(response, "text")
        if generated is None:
            return ValidationResult(passed=False, message="the answer has no 'text' output")
        row = _first_row(generated)
        return check_text(expected, str(row[0]) if row else "")
    # By name: a classifier's float "score" output is no embedding.
    vectors = _output(response, "embedding")
    if vectors is None:
        return ValidationResult(passed=False, message="the answer has no 'embedding' output")
    return check_embedding(expected, [float(x) for x in _first_row(vectors)])
