"""The operator's HTTP client for serving pods: /status, and the validation check.

The verdict is the contract's (`modeldeploy_contract.judge`, the same the runtime applies
to itself); this is the thin httpx part. The operator checks every ready pod of a template
itself before promotion, so a pod that lied about its own validation still cannot take
traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from modeldeploy_contract import judge
from modeldeploy_contract.config import Validation


class RuntimeClient:
    """Talks to serving pods on their pod IPs."""

    def __init__(self, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        # `transport` is the test seam (httpx.MockTransport); None is the real network.
        self._http = httpx.Client(timeout=timeout, transport=transport)

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
        self, ip: str, port: int, model: str, validation: Validation
    ) -> tuple[bool, str]:
        """Send the validation input to one pod and judge its answer."""
        url = f"http://{ip}:{port}/v2/models/{model}/infer"
        try:
            response = self._http.post(
                url, json=judge.validation_request(validation), timeout=validation.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return False, f"no answer from {ip}:{port}: {type(exc).__name__}"
        if response.status_code != 200:
            return False, f"{ip}:{port} answered HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return False, f"{ip}:{port} answered with something other than JSON"
        verdict = judge.check_answer(validation.expected, body)
        return bool(verdict.passed), verdict.message
