"""The huggingFace source against a local hub: an HTTP server on 127.0.0.1 that answers the
hub's model-info and file-resolution API for a tiny model, reached through HF_ENDPOINT.

Online by default; the revision resolves to a commit sha that lands in the cache manifest,
in the fetch output and in the runtime's /status; offline really reads a pre-populated
hub cache, with the hub gone.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e import loopback

REPO = "acme/tiny-bert"
COMMIT = hashlib.sha1(b"tiny-bert at main").hexdigest()


class LocalHub:
    """Serves one repo at one commit, for revision "main" or the sha itself."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.seen: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                hub.seen.append(f"{self.command} {path}")
                info_prefix = f"/api/models/{REPO}/revision/"
                resolve_prefix = f"/{REPO}/resolve/"
                if path.startswith(info_prefix) and path[len(info_prefix):] in ("main", COMMIT):
                    body = json.dumps({
                        "id": REPO, "modelId": REPO, "sha": COMMIT, "private": False,
                        "siblings": [
                            {"rfilename": name, "size": len(data),
                             "blobId": hashlib.sha1(data).hexdigest()}
                            for name, data in hub.files.items()
                        ],
                    }).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                if path == f"/api/models/{REPO}/tree/{COMMIT}":  # the file listing
                    body = json.dumps([
                        {"type": "file", "path": name, "size": len(data),
                         "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in hub.files.items()
                    ]).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                if path.startswith(resolve_prefix):
                    revision, _, name = path[len(resolve_prefix):].partition("/")
                    if revision in ("main", COMMIT) and name in hub.files:
                        data = hub.files[name]
                        self._send(200, data, {
                            "Content-Type": "application/octet-stream",
                            "X-Repo-Commit": COMMIT,
                            "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                        })
                        return
                body = b'{"error": "Repository not found"}'
                self._send(404, body, {"Content-Type": "application/json",
                                       "X-Error-Code": "RepoNotFound"})

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = loopback.serve(Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        loopback.stop(self.server)


@pytest.fixture
def hub(tiny_models: Any) -> Iterator[LocalHub]:
    files = {p.name: p.read_bytes() for p in sorted(tiny_models.embedding.iterdir())
             if p.is_file()}
    server = LocalHub(files)
    yield server
    server.close()


def _env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), **extra)
    return env


def _fetch(helpers: Any, write_config: Any, tmp_path: Path, env: dict[str, str],
           **source: Any) -> tuple[int, str, str]:
    doc = helpers.runtime_config("hubtiny", source={"huggingFace": {"repo": REPO, **source}})
    log = tmp_path / "term"
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                             str(tmp_path / "cache"), "--termination-log", str(log), env=env)
    return result.returncode, log.read_text() if log.exists() else "", result.stdout


def _manifest(tmp_path: Path) -> dict[str, Any]:
    entry = tmp_path / "cache" / "hubtiny" / "v1"
    doc: dict[str, Any] = json.loads((entry / ".modeldeploy-manifest.json").read_text())
    return doc


def test_online_by_default_main_resolves_to_a_commit_recorded_in_the_manifest(
    hub: LocalHub, helpers: Any, write_config: Any, tmp_path: Path, tiny_models: Any,
) -> None:
    code, reason, stdout = _fetch(helpers, write_config, tmp_path, _env(tmp_path, hub.endpoint))
    assert code == 0, (reason, hub.seen)
    assert f"revision {COMMIT}" in stdout
    manifest = _manifest(tmp_path)
    assert manifest["revision"] == COMMIT
    assert set(manifest["sizes"]) == set(hub.files)
    for name, data in hub.files.items():
        assert (tmp_path / "cache" / "hubtiny" / "v1" / name).read_bytes() == data
    # The files were asked for at the resolved commit, not at the moving "main".
    downloads = [s for s in hub.seen if "/resolve/" in s]
    assert downloads and all(f"/resolve/{COMMIT}/" in s for s in downloads), hub.seen


def test_offline_reads_a_pre_populated_hub_cache_with_the_hub_gone(
    hub: LocalHub, helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    # Pre-populate HF_HOME as an image build or a node warm-up job would.
    import subprocess
    import sys

    env = _env(tmp_path, hub.endpoint)
    subprocess.run([sys.executable, "-c", f"import huggingface_hub; "
                    f"huggingface_hub.snapshot_download({REPO!r}, revision='main')"],
                   env=env, check=True, capture_output=True)
    hub.close()  # nothing may be asked of the network from here on
    for offline_env, spec in (({"HF_HUB_OFFLINE": "1"}, {}), ({}, {"offline": True})):
        target = tmp_path / ("env" if offline_env else "spec")
        target.mkdir()
        env = _env(target, hub.endpoint, **offline_env)
        env["HF_HOME"] = str(tmp_path / "hf")
        code, reason, _ = _fetch(helpers, write_config, target, env, **spec)
        assert code == 0, reason
        manifest = _manifest(target)
        assert manifest["revision"] == COMMIT
        assert set(manifest["sizes"]) == set(hub.files)
        for name, data in hub.files.items():
            assert (target / "cache" / "hubtiny" / "v1" / name).read_bytes() == data


def test_offline_with_an_empty_hub_cache_names_the_fix(
    hub: LocalHub, helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    code, reason, _ = _fetch(helpers, write_config, tmp_path, _env(tmp_path, hub.endpoint),
                             offline=True)
    assert code == 1
    assert "pre-populate the hub cache (HF_HOME or HF_HUB_CACHE)" in reason
    assert not [s for s in hub.seen if "/resolve/" in s or "/api/" in s]
    assert not (tmp_path / "cache" / "hubtiny" / "v1").exists()


def test_the_served_status_names_the_commit(
    hub: LocalHub, helpers: Any, write_config: Any, tmp_path: Path, serve: Any,
) -> None:
    code, reason, _ = _fetch(helpers, write_config, tmp_path, _env(tmp_path, hub.endpoint))
    assert code == 0, reason
    doc = helpers.runtime_config("hubtiny", source={"huggingFace": {"repo": REPO}})
    served = serve(write_config(doc), tmp_path / "cache")
    try:
        assert served.wait_until(lambda: served.get("/readyz")[0] == 200), "never ready"
        status, body = served.get("/status")
        assert status == 200
        assert body["model"]["revision"] == COMMIT
    finally:
        served.stop()
