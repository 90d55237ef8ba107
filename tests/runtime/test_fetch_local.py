"""`fetch` orchestration with a stand-in downloader: locking, hits, cleanup; hub offline mode."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_e2e import loopback
from modeldeploy_runtime import cache
from modeldeploy_runtime.errors import IntegrityError
from modeldeploy_runtime.fetch import Downloaded, fetch
from modeldeploy_runtime.hub import select


def _config(**model: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate({
        "model": {"name": "m", "version": "v1", "source": {"s3": {"bucket": "b"}}, **model},
        "task": "embedding",
    })


def test_two_fetches_sharing_a_cache_take_turns_and_the_second_hits(tmp_path: Path) -> None:
    calls: list[float] = []

    def slow_downloader(config: RuntimeConfig, staging: Path) -> Downloaded:
        calls.append(time.monotonic())
        time.sleep(0.5)
        (staging / "w.bin").write_bytes(b"x" * 100)
        return Downloaded({"w.bin": 100})

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        fetch(_config(), tmp_path, slow_downloader))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r.hit for r in results) == [False, True]
    hit = next(r for r in results if r.hit)
    assert hit.waited_for_lock_seconds > 0.3
    assert cache.is_complete(tmp_path / "m" / "v1")


def test_a_downloader_that_raises_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(config: RuntimeConfig, staging: Path) -> Downloaded:
        (staging / "w.bin").write_bytes(b"partial")
        raise KeyboardInterrupt  # also an interrupt must clean up

    with pytest.raises(KeyboardInterrupt):
        fetch(_config(), tmp_path, broken)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".v1.lock"]


def test_a_manifest_naming_a_file_the_source_lacks_is_an_integrity_error(tmp_path: Path) -> None:
    def one_file(config: RuntimeConfig, staging: Path) -> Downloaded:
        (staging / "w.bin").write_bytes(b"x")
        return Downloaded({"w.bin": 1})

    with pytest.raises(IntegrityError, match=r"'model\.safetensors' but the source has no such"):
        fetch(_config(sha256={"model.safetensors": "0" * 64}), tmp_path, one_file)
    assert not (tmp_path / "m" / "v1").exists()


def test_hub_include_exclude_follow_the_hub_glob_rules() -> None:
    names = ["config.json", "model.safetensors", "pytorch_model.bin", "onnx/model.onnx",
             "1_Pooling/config.json"]
    assert select(names, ["*.json", "*.safetensors"], []) == [
        "config.json", "model.safetensors", "1_Pooling/config.json"]
    assert select(names, [], ["*.bin", "onnx/"]) == [
        "config.json", "model.safetensors", "1_Pooling/config.json"]


def test_hub_offline_with_an_empty_hub_cache_fails_with_the_fix(
    helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    doc = helpers.runtime_config("hubm", source={"huggingFace": {"repo": "org/absent"}})
    log = tmp_path / "term"
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                             str(tmp_path / "cache"), "--termination-log", str(log), env=env)
    assert result.returncode == 1
    reason = log.read_text()
    assert "huggingFace repo 'org/absent'" in reason
    assert "offline mode (model.source.huggingFace.offline or HF_HUB_OFFLINE)" in reason
    assert not (tmp_path / "cache" / "hubm" / "v1").exists()


def test_hub_fetch_goes_to_hf_endpoint_and_a_missing_repo_leaves_no_entry(
    helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    import http.server

    seen: list[str] = []

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    hub = loopback.serve(NotFound)
    try:
        env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}",
                   HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0")
        env.pop("HF_TOKEN", None)
        doc = helpers.runtime_config("hubm", source={"huggingFace": {
            "repo": "org/absent", "revision": "main"}})
        log = tmp_path / "term"
        result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                                 str(tmp_path / "cache"), "--termination-log", str(log), env=env)
    finally:
        loopback.stop(hub)
    assert result.returncode == 1
    assert any(path.startswith("/api/models/org/absent") for path in seen), seen
    assert "check the repo id, revision, HF_ENDPOINT and HF_TOKEN" in log.read_text()
    assert not (tmp_path / "cache" / "hubm" / "v1").exists()
