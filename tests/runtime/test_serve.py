"""`serve` as a real process on loopback: readiness gating, OIP, status, metrics, failures."""

from __future__ import annotations

import json
import threading
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime import loader

pytestmark = pytest.mark.slow


def _expected_output(model_dir: Path, task: str, text: str) -> Any:
    config = RuntimeConfig.model_validate({
        "model": {"name": "x", "version": "v", "source": {"s3": {"bucket": "b"}}}, "task": task})
    pipeline = loader.load(config, model_dir, lambda *_: None)
    if task == "embedding":
        return pipeline.embed([text])[0].tolist()
    return pipeline.classify([text])[0][0]


def _infer(texts: list[str]) -> bytes:
    return json.dumps({"id": "r1", "inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}).encode()


def _start_embedding_server(tiny_models: Any, helpers: Any, write_config: Any, serve: Any,
                            cache_root: Path, env: dict[str, str] | None = None) -> Any:
    expected = _expected_output(tiny_models.embedding, "embedding", "some text")
    doc = helpers.runtime_config("tiny", "v1", validation={
        "input": "some text", "expected": {"embedding": expected, "minCosineSimilarity": 0.999}})
    if not (cache_root / "tiny" / "v1").exists():
        helpers.place_in_cache(tiny_models.embedding, cache_root, "tiny", "v1")
    return serve(write_config(doc), cache_root, env)


@pytest.fixture(scope="module")
def embedding_server(tiny_models: Any, helpers: Any, write_config: Any, serve: Any,
                     tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One ready server shared by the tests that only read from it."""
    s = _start_embedding_server(tiny_models, helpers, write_config, serve,
                                tmp_path_factory.mktemp("cache"))
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    return s


def test_readyz_is_503_with_the_phase_during_a_slow_load_and_200_after(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    s = _start_embedding_server(tiny_models, helpers, write_config, serve, tmp_path,
                                {"MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS": "2"})
    assert s.wait_until(lambda: s.get("/healthz")[0] == 200, timeout=60)
    status, body = s.get("/readyz")
    assert status == 503 and body["phase"] == "Loading"
    assert s.get("/v2/health/ready")[0] == 503
    assert s.request("POST", "/v2/models/tiny/infer", _infer(["hi"]))[0] == 503
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    assert s.get("/readyz")[1]["phase"] == "Ready"
    assert s.get("/v2/health/ready")[0] == 200
    assert s.get("/v2/health/live")[0] == 200
    # The deliberate 2 s delay counts towards time-to-ready but not towards any phase.
    assert s.get("/status")[1]["timeToReadySeconds"] >= 2.0
    assert s.stop() == 0


def test_status_reports_every_phase_time_to_ready_and_the_validation(
    embedding_server: Any,
) -> None:
    s = embedding_server
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    _, status = s.get("/status")
    assert status["phase"] == "Ready"
    assert status["model"] == {"name": "tiny", "version": "v1", "revision": None}
    assert status["task"] == "embedding"
    assert set(status["phases"]) == {"import", "fileIO", "deserialize", "deviceTransfer",
                                     "warmup", "validation"}
    assert all(isinstance(v, float) and v >= 0 for v in status["phases"].values())
    assert status["timeToReadySeconds"] > 0
    assert status["validation"]["passed"] is True
    assert status["validation"]["score"] >= 0.999
    assert status["error"] is None


def test_infer_returns_mean_pooled_embeddings_and_metadata(embedding_server: Any) -> None:
    s = embedding_server
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    status, body = s.request("POST", "/v2/models/tiny/infer", _infer(["hello world", "good"]))
    assert status == 200
    assert body["id"] == "r1" and body["model_name"] == "tiny" and body["model_version"] == "v1"
    (out,) = body["outputs"]
    assert out["name"] == "embedding" and out["datatype"] == "FP32" and out["shape"] == [2, 32]
    # No modules.json: sentence-transformers' default, mean pooling without normalisation.
    first = out["data"][:32]
    assert sum(x * x for x in first) > 1.5
    _, meta = s.get("/v2/models/tiny")
    assert meta["name"] == "tiny" and meta["versions"] == ["v1"]
    assert s.get("/v2/models/other")[0] == 404
    assert s.request("POST", "/v2/models/other/infer", _infer(["x"]))[0] == 404


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b'{"inputs": "text"}',
    json.dumps({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
               ).encode(),
    json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]}
               ).encode(),
    json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [None]}]}
               ).encode(),
    b"\xff\xfe garbage",
])
def test_malformed_infer_bodies_get_400_with_a_reason(embedding_server: Any, body: bytes) -> None:
    s = embedding_server
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    status, answer = s.request("POST", "/v2/models/tiny/infer", body)
    assert status == 400
    assert answer["error"]
    assert s.request("POST", "/v2/models/tiny/infer", _infer(["still fine"]))[0] == 200


def test_concurrent_requests_all_succeed_and_metrics_count_them(embedding_server: Any) -> None:
    s = embedding_server
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    codes: list[int] = []

    def client() -> None:
        for i in range(10):
            codes.append(s.request("POST", "/v2/models/tiny/infer",
                                   _infer([f"text {i}"] * (i + 1)))[0])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 80
    _, metrics = s.get("/metrics")
    line = next(x for x in metrics.splitlines() if x.startswith(
        'modeldeploy_requests_total{code="200",route="/v2/models/{name}/infer"}'))
    assert float(line.split()[-1]) >= 80
    assert 'modeldeploy_load_phase_seconds{phase="warmup"}' in metrics
    assert "modeldeploy_ready 1.0" in metrics


def test_sigterm_stops_the_server_with_exit_code_0(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    s = _start_embedding_server(tiny_models, helpers, write_config, serve, tmp_path)
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    answers: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                answers.append(s.request("POST", "/v2/models/tiny/infer", _infer(["x"] * 64))[0])
            except (urllib.error.URLError, OSError) as error:
                answers.append(type(error).__name__)
                return

    thread = threading.Thread(target=client)
    thread.start()
    while len(answers) < 3:
        pass
    assert s.stop() == 0
    stop.set()
    thread.join()
    # Every request that got an answer got a full 200; after shutdown, connections are refused.
    assert [a for a in answers if isinstance(a, int)] == [200] * sum(
        isinstance(a, int) for a in answers)
    assert sum(isinstance(a, int) for a in answers) >= 3


def test_a_wrong_expected_label_never_goes_ready_and_exits_1_with_the_reason(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    actual = _expected_output(tiny_models.classifier, "text-classification", "good movie")
    wrong = "NEGATIVE" if actual == "POSITIVE" else "POSITIVE"
    doc = helpers.runtime_config("cls", "v2", task="text-classification", validation={
        "input": "good movie", "expected": {"label": wrong}})
    helpers.place_in_cache(tiny_models.classifier, tmp_path / "cache", "cls", "v2")
    s = serve(write_config(doc), tmp_path / "cache")
    seen: list[int] = []
    s.wait_until(lambda: seen.append(s.get("/readyz")[0]) is not None and False, timeout=90)
    assert s.process.wait(timeout=30) == 1
    assert 200 not in seen
    reason = s.termination_log.read_text()
    assert reason.startswith("ValidationFailed: ")
    assert f"expected label '{wrong}', the model answered '{actual}'" in reason
    assert s.process.stdout is not None
    assert "failed: ValidationFailed: validation failed" in s.process.stdout.read()


def test_a_right_expected_label_goes_ready_and_classifies(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    actual = _expected_output(tiny_models.classifier, "text-classification", "good movie")
    doc = helpers.runtime_config("cls", "v1", task="text-classification", validation={
        "input": "good movie", "expected": {"label": actual}})
    helpers.place_in_cache(tiny_models.classifier, tmp_path / "cache", "cls", "v1")
    s = serve(write_config(doc), tmp_path / "cache")
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    status, body = s.request("POST", "/v2/models/cls/infer", _infer(["good movie", "bad film"]))
    assert status == 200
    label, score = body["outputs"]
    assert label["datatype"] == "BYTES" and label["data"][0] == actual
    assert set(label["data"]) <= {"POSITIVE", "NEGATIVE"}
    assert score["datatype"] == "FP32" and all(0.5 <= p <= 1 for p in score["data"])
    assert s.stop() == 0


def test_serving_without_a_fetched_entry_fails_and_names_the_fix(
    helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    s = serve(write_config(helpers.runtime_config("absent", "v1")), tmp_path / "cache")
    assert s.process.wait(timeout=90) == 1
    reason = s.termination_log.read_text()
    assert reason.startswith("LoadFailed: ")
    assert "missing or incomplete" in reason and "modeldeploy-runtime fetch" in reason


def test_a_load_that_overruns_its_stage_deadline_exits_1_naming_the_stage(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    doc = helpers.runtime_config("tiny", "v1", stageDeadlineSeconds={"load": 2})
    helpers.place_in_cache(tiny_models.embedding, tmp_path / "cache", "tiny", "v1")
    s = serve(write_config(doc), tmp_path / "cache",
              {"MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS": "30"})
    assert s.wait_until(lambda: s.get("/healthz")[0] == 200, timeout=60)
    assert s.process.wait(timeout=60) == 1
    assert s.termination_log.read_text().startswith(
        "LoadDeadlineExceeded: the load stage did not finish within stageDeadlineSeconds.load=2s")


def test_stage_deadlines_that_are_met_change_nothing(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    doc = helpers.runtime_config("tiny", "v1", stageDeadlineSeconds={
        "load": 120, "warmup": 60, "validation": 60})
    helpers.place_in_cache(tiny_models.embedding, tmp_path / "cache", "tiny", "v1")
    s = serve(write_config(doc), tmp_path / "cache")
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    assert s.stop() == 0


def test_the_wrong_after_ready_knob_turns_answers_around_after_a_correct_start(
    tiny_models: Any, helpers: Any, write_config: Any, serve: Any, tmp_path: Path,
) -> None:
    s = _start_embedding_server(tiny_models, helpers, write_config, serve, tmp_path,
                                {"MODELDEPLOY_DEBUG_WRONG_AFTER_READY_SECONDS": "3"})
    assert s.wait_until(lambda: s.get("/readyz")[0] == 200, timeout=90)
    expected = _expected_output(tiny_models.embedding, "embedding", "some text")

    def similarity() -> float:
        status, body = s.request("POST", "/v2/models/tiny/infer", _infer(["some text"]))
        assert status == 200
        got = body["outputs"][0]["data"]
        dot = sum(a * b for a, b in zip(expected, got, strict=True))
        return dot / (sum(a * a for a in expected) ** 0.5 * sum(b * b for b in got) ** 0.5)

    assert similarity() > 0.999
    assert s.wait_until(lambda: similarity() < -0.999, timeout=30)
    # Still Ready: only an outside check (the operator's, through the Service) can tell.
    assert s.get("/readyz")[0] == 200
    assert s.stop() == 0


def test_an_oversized_body_is_refused_with_413_before_it_is_read(
    embedding_server: Any,
) -> None:
    import socket
    import urllib.parse

    s = embedding_server
    url = urllib.parse.urlsplit(s.base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        # Only the headers: the server must answer without waiting for 9 MiB of body.
        sock.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 9437184\r\n\r\n")
        raw = b""
        while b"}" not in raw:  # headers and the JSON body may come in separate segments
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        answer = raw.decode()
    assert answer.startswith("HTTP/1.1 413")
    assert "limit is 8388608" in answer
    assert s.get("/readyz")[0] == 200
