"""Every answer is counted, and a request never brings the server down: out of memory is a
503 with a reason, a bad request a 400, and the next request is served as usual."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from modeldeploy_contract.status import Phase
from modeldeploy_runtime.batching import Batcher
from modeldeploy_runtime.metrics import Metrics
from modeldeploy_runtime.protocol import Inputs
from modeldeploy_runtime.server import ModelSlot, build_app
from modeldeploy_runtime.state import RuntimeState
from modeldeploy_runtime.tasks import Output
from starlette.testclient import TestClient


@dataclass
class _Flaky:
    """A pipeline whose next answers are scripted: an exception or a normal output."""

    task: str = "embedding"
    failures: list[BaseException] = field(default_factory=list)

    async def infer(self, inputs: Inputs, batcher: Batcher) -> Sequence[Output]:
        if self.failures:
            raise self.failures.pop(0)
        return [Output("embedding", "FP32", [1, 2], [0.6, 0.8])]


def _client(pipeline: _Flaky) -> tuple[TestClient, Metrics]:
    state = RuntimeState("m", "v1", "embedding", 0.0)
    for phase in (Phase.WARMING_UP, Phase.VALIDATING, Phase.READY):
        state.move(phase)
    slot, metrics = ModelSlot(), Metrics()
    slot.pipeline = pipeline  # type: ignore[assignment]
    return TestClient(build_app(state, slot, metrics), raise_server_exceptions=False), metrics


def _infer(client: TestClient) -> tuple[int, dict[str, object]]:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    response = client.post("/v2/models/m/infer", content=json.dumps(body))
    return response.status_code, response.json()


def _count(metrics: Metrics, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "modeldeploy_requests_total", {"route": "/v2/models/{name}/infer", "code": code})
    return value or 0.0


def test_out_of_memory_is_a_503_with_a_reason_and_the_next_request_is_served() -> None:
    pipeline = _Flaky(failures=[torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")])
    client, metrics = _client(pipeline)
    status, body = _infer(client)
    assert status == 503 and body["reason"] == "OutOfMemory"
    assert "fewer or shorter" in str(body["error"])
    assert _infer(client)[0] == 200
    assert (_count(metrics, "503"), _count(metrics, "200")) == (1.0, 1.0)


def test_an_unexpected_failure_is_answered_and_counted_too() -> None:
    client, metrics = _client(_Flaky(failures=[RuntimeError("boom")]))
    status, body = _infer(client)
    assert status == 500 and "RuntimeError: boom" in str(body["error"])
    assert _count(metrics, "500") == 1.0
    assert _infer(client)[0] == 200


def test_bad_requests_are_400s_in_the_metrics() -> None:
    client, metrics = _client(_Flaky())
    response = client.post("/v2/models/m/infer", content=b"{")
    assert response.status_code == 400
    response = client.post("/v1/embeddings", content=b'{"input": 3}')
    assert response.status_code == 400 and "input" in response.json()["error"]
    assert _count(metrics, "400") == 1.0


def test_unknown_paths_and_methods_are_counted() -> None:
    client, metrics = _client(_Flaky())
    assert client.get("/nope").status_code == 404
    assert client.get("/v1/rerank").status_code == 405
    for code in ("404", "405"):
        assert metrics.registry.get_sample_value(
            "modeldeploy_requests_total", {"route": "<unmatched>", "code": code}) == 1.0
