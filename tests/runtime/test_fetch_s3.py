"""`fetch` against a real S3 server (MinIO on loopback): hits, integrity, interruptions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e.s3 import MinioServer

pytestmark = pytest.mark.s3


class Proxy:
    """A loopback TCP proxy that can cut or slow the server's answers (a hostile network)."""

    def __init__(self, upstream: tuple[str, int], limit: int | None = None,
                 delay: float = 0.0) -> None:
        self.upstream, self.limit, self.delay = upstream, limit, delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, None, 0.0),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.limit, self.delay),
                             daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None, delay: float) -> None:
        sent = 0
        try:
            while chunk := src.recv(16384):
                if limit is not None and sent + len(chunk) > limit:
                    dst.sendall(chunk[: limit - sent])
                    break
                dst.sendall(chunk)
                sent += len(chunk)
                if delay:
                    time.sleep(delay)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def proxy(minio: MinioServer) -> Iterator[Any]:
    made: list[Proxy] = []

    def make(**kwargs: Any) -> Proxy:
        made.append(Proxy((minio.host, minio.port), **kwargs))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _fetch(helpers: Any, write_config: Any, cache_root: Path, env: dict[str, str],
           log: Path, **doc: Any) -> subprocess.CompletedProcess[str]:
    config = write_config(helpers.runtime_config(**doc))
    return helpers.run_cli("fetch", "--config", str(config), "--cache-root", str(cache_root),
                           "--termination-log", str(log), env=env)


def _s3(name: str, version: str, endpoint: str) -> dict[str, Any]:
    return {"s3": {"bucket": "models", "prefix": f"{name}/{version}/", "endpoint": endpoint}}


def _no_entry(cache_root: Path, name: str) -> None:
    parent = cache_root / name
    leftovers = sorted(p.name for p in parent.iterdir()) if parent.exists() else []
    assert [n for n in leftovers if not n.endswith(".lock")] == []


def test_fetch_copies_the_prefix_and_a_second_fetch_is_a_hit(
    minio: MinioServer, tiny_models: Any, helpers: Any, write_config: Any, s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    helpers.upload(minio, tiny_models.embedding, "hit", "v1")
    digest = hashlib.sha256((tiny_models.embedding / "model.safetensors").read_bytes()).hexdigest()
    config_doc = helpers.runtime_config("hit", source=_s3("hit", "v1", minio.endpoint))
    config_doc["model"]["sha256"] = {"model.safetensors": digest}
    config = write_config(config_doc)
    args = ("fetch", "--config", str(config), "--cache-root", str(tmp_path / "cache"),
            "--termination-log", str(tmp_path / "term"))
    first = helpers.run_cli(*args, env=s3_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("fetched ")
    entry = tmp_path / "cache" / "hit" / "v1"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (entry / name).read_bytes() == (tiny_models.embedding / name).read_bytes()
    second = helpers.run_cli(*args, env=s3_env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("hit ")
    assert "skipping the download" in second.stderr


def test_a_sha256_mismatch_leaves_no_cache_entry_and_says_why(
    minio: MinioServer, tiny_models: Any, helpers: Any, write_config: Any, s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    helpers.upload(minio, tiny_models.embedding, "badsum", "v1")
    doc = helpers.runtime_config("badsum", source=_s3("badsum", "v1", minio.endpoint))
    doc["model"]["sha256"] = {"model.safetensors": "0" * 64}
    log = tmp_path / "term"
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                             str(tmp_path / "cache"), "--termination-log", str(log), env=s3_env)
    assert result.returncode == 1
    assert "'model.safetensors' has sha256" in log.read_text()
    assert "expected " + "0" * 64 in log.read_text()
    _no_entry(tmp_path / "cache", "badsum")


def test_a_truncated_download_leaves_no_cache_entry(
    minio: MinioServer, tiny_models: Any, helpers: Any, write_config: Any, s3_env: dict[str, str],
    tmp_path: Path, proxy: Any,
) -> None:
    helpers.upload(minio, tiny_models.embedding, "trunc", "v1")
    cut = proxy(limit=6000)  # listings fit; the weight file's body is cut short every time
    log = tmp_path / "term"
    result = _fetch(helpers, write_config, tmp_path / "cache", s3_env, log,
                    name="trunc", source=_s3("trunc", "v1", cut.endpoint))
    assert result.returncode == 1, result.stderr
    assert "failed after 4 attempts" in log.read_text()
    assert "IncompleteReadError" in log.read_text()
    _no_entry(tmp_path / "cache", "trunc")


def test_a_fetch_killed_midway_leaves_no_entry_and_the_next_fetch_completes(
    minio: MinioServer, tiny_models: Any, helpers: Any, write_config: Any, s3_env: dict[str, str],
    tmp_path: Path, proxy: Any,
) -> None:
    helpers.upload(minio, tiny_models.embedding, "killed", "v1")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(4 << 20))
    minio.client().upload_file(str(blob), "models", "killed/v1/blob.bin")
    slow = proxy(delay=0.02)
    cache_root = tmp_path / "cache"
    config = write_config(helpers.runtime_config("killed", source=_s3("killed", "v1",
                                                                       slow.endpoint)))
    process = subprocess.Popen(
        [sys.executable, "-m", "modeldeploy_runtime.cli", "fetch", "--config", str(config),
         "--cache-root", str(cache_root), "--termination-log", str(tmp_path / "term")],
        env=s3_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list((cache_root / "killed").glob(".tmp-v1-*/blob.bin")):
        assert time.monotonic() < deadline and process.poll() is None, "fetch never started"
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (cache_root / "killed" / "v1").exists()
    again = _fetch(helpers, write_config, cache_root, s3_env, tmp_path / "term",
                   name="killed", source=_s3("killed", "v1", minio.endpoint))
    assert again.returncode == 0, again.stderr
    assert (cache_root / "killed" / "v1" / "blob.bin").read_bytes() == blob.read_bytes()
    assert not list((cache_root / "killed").glob(".tmp-*")), "the leftover was not cleaned"


def test_wrong_credentials_fail_without_printing_the_secret(
    minio: MinioServer, tiny_models: Any, helpers: Any, write_config: Any, s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = dict(s3_env, AWS_SECRET_ACCESS_KEY="wrong-" + minio.secret_key)
    log = tmp_path / "term"
    result = _fetch(helpers, write_config, tmp_path / "cache", env, log,
                    name="creds", source=_s3("creds", "v1", minio.endpoint))
    assert result.returncode == 1
    assert "SignatureDoesNotMatch" in log.read_text() or "AccessDenied" in log.read_text()
    for text in (result.stdout, result.stderr, log.read_text()):
        assert minio.secret_key not in text


def test_missing_credentials_name_the_variables_to_set(
    minio: MinioServer, helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(
        tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    log = tmp_path / "term"
    result = _fetch(helpers, write_config, tmp_path / "cache", env, log,
                    name="nocreds", source=_s3("nocreds", "v1", minio.endpoint))
    assert result.returncode == 1
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in log.read_text()


def test_an_empty_prefix_is_an_error_not_an_empty_model(
    minio: MinioServer, helpers: Any, write_config: Any, s3_env: dict[str, str], tmp_path: Path,
) -> None:
    log = tmp_path / "term"
    result = _fetch(helpers, write_config, tmp_path / "cache", s3_env, log,
                    name="nothing", source=_s3("nothing", "v9", minio.endpoint))
    assert result.returncode == 1
    assert "no objects under s3://models/nothing/v9/" in log.read_text()
    _no_entry(tmp_path / "cache", "nothing")


def test_a_version_with_dot_dot_is_refused_before_any_download(
    helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    log = tmp_path / "term"
    result = _fetch(helpers, write_config, tmp_path / "cache", dict(os.environ), log,
                    name="m", version="../../etc")
    assert result.returncode == 1
    assert "cannot be used as a cache directory name" in log.read_text()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
