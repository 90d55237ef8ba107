"""The operator's HTTP client for serving pods: /status, and the validation check.

`judge` (pure) decides whether an inference answer matches the spec's expected output;
`RuntimeClient` is the thin httpx part. The operator checks every ready pod of a template
itself before promotion, so a pod that lied about its own validation still cannot take
traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from modeldeploy_operator.spec import ExpectedOutput, ValidationSpec


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


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0 when either vector is all zeros."""
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def judge(expected: ExpectedOutput, response: Mapping[str, Any]) -> tuple[bool, str]:
    """Does an OIP v2 inference response match `expected`? (passed, one-line reason)."""
    outputs = response.get("outputs") or []
    if expected.label is not None:
        labels = next((o for o in outputs if o.get("datatype") == "BYTES"), None)
        if labels is None:
            return False, "the answer has no BYTES label output"
        got = _first_row(labels)
        label = str(got[0]) if got else ""
        if label == expected.label:
            return True, f"label {label!r} as expected"
        return False, f"expected label {expected.label!r}, got {label!r}"
    vectors = next((o for o in outputs if o.get("datatype") in ("FP32", "FP16", "FP64")), None)
    if vectors is None:
        return False, "the answer has no floating-point embedding output"
    actual = [float(x) for x in _first_row(vectors)]
    wanted = list(expected.embedding or [])
    if len(actual) != len(wanted):
        return False, f"expected an embedding of {len(wanted)} values, got {len(actual)}"
    score = cosine(wanted, actual)
    if score >= expected.min_cosine_similarity:
        return True, f"cosine similarity {score:.4f} >= {expected.min_cosine_similarity}"
    return False, (
        f"cosine similarity {score:.4f} is below the required {expected.min_cosine_similarity}"
    )


def infer_request(text: str) -> dict[str, Any]:
    """The OIP v2 request body for one text input."""
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}


class RuntimeClient:
    """Talks to serving pods on their pod IPs."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def status(self, ip: str, port: int) -> Mapping[str, Any] | None:
        """The runtime's /status JSON, or None when it does not answer."""
        try:
            response = self._http.get(f"http://{ip}:{port}/status", timeout=2.0)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def validate(
        self, ip: str, port: int, model: str, validation: ValidationSpec
    ) -> tuple[bool, str]:
        """Send the validation input to one pod and judge its answer."""
        url = f"http://{ip}:{port}/v2/models/{model}/infer"
        try:
            response = self._http.post(
                url, json=infer_request(validation.input), timeout=validation.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return False, f"no answer from {ip}:{port}: {type(exc).__name__}"
        if response.status_code != 200:
            return False, f"{ip}:{port} answered HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return False, f"{ip}:{port} answered with something other than JSON"
        return judge(validation.expected, body)
