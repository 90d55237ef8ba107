"""Fixtures for the runtime tests: tiny generated BERT models, a real MinIO, a real server.

Nothing here downloads: the models are random few-layer BERTs built with transformers and
a WordPiece tokenizer built from a word list.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e.s3 import MinioServer, create_bucket, free_port, upload_directory

WORDS = (
    'hello', 'world', 'the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'good',
    'bad', 'movie', 'film', 'great', 'terrible', 'is', 'was', 'a', 'an', 'and', 'not', 'very',
    'some', 'text',
)
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab_list = specials + list(WORDS) + letters + ["##" + c for c in letters] + list(".,!?")
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    return tok.to_str()


@dataclass(frozen=True)
class TinyModels:
    """Directories of generated models."""

    embedding: Path
    classifier: Path
    vocab_size: int


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """A 2-layer BERT (embedding) and a 2-layer BERT classifier, random weights, safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = _tokenizer_json()
    vocab_size = len(json.loads(tokenizer)["model"]["vocab"])
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    torch.manual_seed(0)
    dirs = {}
    for name, cls in (("embedding", BertModel), ("classifier", BertForSequenceClassification)):
        model = cls(config).eval()
        target = root / name
        model.save_pretrained(target, safe_serialization=True)
        (target / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
        dirs[name] = target
    return TinyModels(dirs["embedding"], dirs["classifier"], vocab_size)


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """A real MinIO on loopback; a missing binary fails (run `make minio`), never skips."""
    with MinioServer(tmp_path_factory.mktemp("minio") / "data") as server:
        create_bucket(server, "models")
        yield server


@pytest.fixture
def s3_env(minio: MinioServer) -> dict[str, str]:
    """Process environment with the MinIO credentials, as the operator would set them."""
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=minio.access_key, AWS_SECRET_ACCESS_KEY=minio.secret_key)
    env.pop("AWS_SESSION_TOKEN", None)
    return env


def runtime_config(
    name: str = "tiny", version: str = "v1", *, task: str = "embedding",
    source: dict[str, Any] | None = None, **extra: Any,
) -> dict[str, Any]:
    """A config document in the operator's wire format."""
    doc: dict[str, Any] = {
        "model": {"name": name, "version": version,
                  "source": source or {"s3": {"bucket": "models", "prefix": f"{name}/{version}/"}}},
        "task": task,
        "warmup": {"inputs": ["hello world"], "iterations": 2},
        "validation": None,
    }
    doc.update(extra)
    return doc


@pytest.fixture(scope="module")
def write_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], Path]:
    """Write a config document to a file and return its path."""
    tmp_path = tmp_path_factory.mktemp("configs")
    def write(doc: dict[str, Any]) -> Path:
        path = tmp_path / f"runtime-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path
    return write


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `modeldeploy-runtime ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy_runtime.cli", *args], env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def upload(minio: MinioServer, directory: Path, name: str, version: str) -> None:
    """Put a model directory at s3://models/<name>/<version>/."""
    upload_directory(minio, "models", f"{name}/{version}", directory)


@dataclass
class Served:
    """A running `modeldeploy-runtime serve` process."""

    process: subprocess.Popen[str]
    base: str
    termination_log: Path

    def get(self, path: str) -> tuple[int, Any]:
        """GET path; returns (status, parsed JSON or text)."""
        return self.request("GET", path)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """Send one request; returns (status, JSON or text)."""
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 90) -> bool:
        """Poll until predicate() is true, the process exits, or timeout; returns predicate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except OSError:
                pass
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Served]]:
    """Start `serve` processes on loopback; every one is stopped at the module's end."""
    started: list[Served] = []
    tmp_path = tmp_path_factory.mktemp("serve")

    def start(config: Path, cache_root: Path, env_extra: dict[str, str] | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"termination-{port}.log"
        env = dict(os.environ, **(env_extra or {}))
        process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy_runtime.cli", "serve", "--config", str(config),
             "--cache-root", str(cache_root), "--host", "127.0.0.1", "--port", str(port),
             "--termination-log", str(log)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        served = Served(process, f"http://127.0.0.1:{port}", log)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
        if served.process.stdout is not None:
            served.process.stdout.close()


@dataclass
class ModelServer:
    """A `serve` process over one model directory (the reference the test compares with)."""

    model_dir: Path
    served: Served
    name: str

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST JSON; (status, parsed body)."""
        return self.served.request("POST", path, json.dumps(body).encode())

    def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any] | str]:
        """POST with stream: true; the SSE data payloads in order ('[DONE]' as a string)."""
        import http.client

        host, port = self.served.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request("POST", path, json.dumps({**body, "stream": True}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("content-type", "").startswith("text/event-stream")
            events: list[dict[str, Any] | str] = []
            for block in response.read().decode().split("\n\n"):
                if not block.strip():
                    continue
                assert block.startswith("data: "), block
                data = block.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
            return events
        finally:
            conn.close()

    def metric(self, name: str) -> float:
        """One unlabelled sample of /metrics."""
        status, text = self.served.get("/metrics")
        assert status == 200
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


@pytest.fixture(scope="module")
def start_models(
    write_config: Callable[[dict[str, Any]], Path], serve: Callable[..., Served],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., dict[str, Any]]:
    """Start one `serve` per {name: (model dir, task)} at once, so their start-ups overlap,
    and wait until each is ready (wait=False: return at once, for tests of failing
    start-ups). `configs` adds runtime config keys per name; `kind` is the ModelServer
    class to return."""

    def start(models: dict[str, tuple[Path, str]],
              configs: dict[str, dict[str, Any]] | None = None, wait: bool = True,
              timeout: float = 240, kind: type[ModelServer] = ModelServer,
              ) -> dict[str, ModelServer]:
        cache = tmp_path_factory.mktemp("cache")
        servers = {}
        for name, (model_dir, task) in models.items():
            place_in_cache(model_dir, cache, name, "v1")
            doc = runtime_config(name, "v1", task=task,
                                 warmup={"inputs": ["hello world"], "iterations": 1})
            doc.update((configs or {}).get(name, {}))
            servers[name] = kind(model_dir, serve(write_config(doc), cache), name)
        for server in servers.values() if wait else ():
            s = server.served
            if not s.wait_until(lambda s=s: s.get("/readyz")[0] == 200, timeout=timeout):
                s.process.kill()
                output = s.process.stdout.read() if s.process.stdout else ""
                raise AssertionError(f"{server.name} never became ready:\n{output[-3000:]}")
        return servers

    return start


def place_in_cache(model_dir: Path, cache_root: Path, name: str, version: str) -> Path:
    """Put a model directory into the cache as `fetch` would (via the cache module)."""
    from modeldeploy_runtime import cache

    entry = cache.entry_dir(cache_root, name, version)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.new_staging_dir(entry)
    sizes = {}
    for path in model_dir.rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(model_dir))
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(path.read_bytes())
            sizes[rel] = path.stat().st_size
    cache.commit(staging, entry, cache.Manifest(sizes=sizes))
    return entry


def put_entry(root: Path, name: str, version: str, size: int, used: float) -> Path:
    """A complete cache entry of `size` bytes, last used at `used` (epoch seconds)."""
    from modeldeploy_runtime import cache

    entry = cache.entry_dir(root, name, version)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.new_staging_dir(entry)
    (staging / "w.bin").write_bytes(b"x" * size)
    cache.commit(staging, entry, cache.Manifest(sizes={"w.bin": size}))
    cache.touch_used(entry)
    os.utime(entry.parent / f".{version}.used", (used, used))
    return entry


@pytest.fixture(scope="session")
def helpers() -> Any:
    """The module-level helpers, for tests (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        runtime_config=runtime_config, run_cli=run_cli, upload=upload,
        place_in_cache=place_in_cache, put_entry=put_entry,
        WORDS=WORDS, LABELS=LABELS,
    )
