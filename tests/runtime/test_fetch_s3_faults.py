"""`fetch` through a hostile HTTP proxy on loopback in front of a real MinIO.

The proxy forwards each request unchanged (Host header included, so signatures still hold)
and, when a test asks, answers a request itself: 503 SlowDown, a connection dropped halfway
through a body, a 200 with the whole object to a ranged GET, a body cut short, a 301.
"""

from __future__ import annotations

import http.client
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e import loopback
from modeldeploy_e2e.s3 import MinioServer

pytestmark = pytest.mark.s3

PART_MIB = 1  # small parts so a 5 MiB file makes several ranged GETs


@dataclass
class Seen:
    """One request the proxy received and what it did with it."""

    method: str
    path: str
    range: str | None
    action: str


# (method, path, Range header or None, how many such requests came before) -> action
Policy = Callable[[str, str, str | None, int], str]


@dataclass
class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 that applies a fault policy per request."""

    upstream: tuple[str, int]
    policy: Policy
    # Path-style request path -> the whole object, for answering a ranged GET with a 200.
    whole_object: Callable[[str], bytes]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self
        counts: dict[tuple[str, str, str | None], int] = {}
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                rng = self.headers.get("Range")
                key = (self.command, self.path, rng)
                with lock:
                    count = counts.get(key, 0)
                    counts[key] = count + 1
                action = proxy.policy(self.command, self.path, rng, count)
                proxy.seen.append(Seen(self.command, self.path, rng, action))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if action == "503":
                    self._reply(503, b"<Error><Code>SlowDown</Code><Message>Please reduce your "
                                b"request rate.</Message></Error>")
                    return
                if action == "301":
                    self._reply(301, b"<Error><Code>PermanentRedirect</Code><Message>The bucket "
                                b"you are attempting to access must be addressed using the "
                                b"specified endpoint.</Message></Error>",
                                {"x-amz-bucket-region": "eu-west-1"})
                    return
                if action == "ignore-range":
                    # As a server (or cache) that ignores Range: the whole object, 200.
                    self._reply(200, proxy.whole_object(self.path),
                                {"ETag": self.headers.get("If-Match", '"x"')},
                                "application/octet-stream")
                    return
                headers = {k: v for k, v in self.headers.items()}
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                finally:
                    upstream.close()
                if action == "corrupt":
                    # Same length, one byte flipped: only a content check can notice.
                    payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
                if action == "gcs-namespace":
                    # GCS's S3-interoperable XML API answers in its own namespace.
                    payload = payload.replace(b"http://s3.amazonaws.com/doc/2006-03-01/",
                                              b"http://doc.s3.amazonaws.com/2006-03-01")
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection", "date", "server",
                                            "content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if action in {"drop-mid-body", "truncate"}:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

            def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None,
                       content_type: str = "application/xml") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = loopback.serve(Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def ranged_gets(self, action: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.range is not None
                and (action is None or s.action == action)]

    def close(self) -> None:
        loopback.stop(self.server)


@pytest.fixture
def fault_proxy(minio: MinioServer) -> Iterator[Callable[[Policy], FaultProxy]]:
    made: list[FaultProxy] = []

    client = minio.client()

    def whole(path: str) -> bytes:
        bucket, key = path.split("?")[0].lstrip("/").split("/", 1)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def make(policy: Policy) -> FaultProxy:
        made.append(FaultProxy((minio.host, minio.port), policy, whole))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture(scope="module")
def blob_model(minio: MinioServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5 MiB weight file and a small JSON at s3://models/faults/v1/ (and the originals)."""
    source = tmp_path_factory.mktemp("fault-model")
    (source / "weights.bin").write_bytes(os.urandom(5 << 20))
    (source / "config.json").write_text('{"model_type": "bert"}')
    client = minio.client()
    for path in source.iterdir():
        client.upload_file(str(path), "models", f"faults/v1/{path.name}")
    return source


def _run(helpers: Any, write_config: Any, tmp_path: Path, env: dict[str, str],
         endpoint: str, **s3: Any) -> tuple[int, str, str]:
    doc = helpers.runtime_config("faults", source={"s3": {
        "bucket": "models", "prefix": "faults/v1/", "endpoint": endpoint, **s3}})
    log = tmp_path / "term"
    env = dict(env, MODELDEPLOY_S3_PART_MIB=str(PART_MIB))
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                             str(tmp_path / "cache"), "--termination-log", str(log), env=env)
    reason = log.read_text() if log.exists() else ""
    return result.returncode, reason, result.stdout + result.stderr


def _entry_matches(tmp_path: Path, source: Path) -> None:
    entry = tmp_path / "cache" / "faults" / "v1"
    for name in ("weights.bin", "config.json"):
        assert (entry / name).read_bytes() == (source / name).read_bytes()


def _no_entry(tmp_path: Path) -> None:
    parent = tmp_path / "cache" / "faults"
    left = [p.name for p in parent.iterdir()] if parent.exists() else []
    assert [n for n in left if not n.endswith(".lock")] == []


def test_503_slowdown_on_some_parts_is_retried_and_the_fetch_succeeds(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    # Every other part answers 503 SlowDown twice before the real answer.
    def even_part(r: str | None) -> bool:
        return r is not None and int(r.split("=")[1].split("-")[0]) // (PART_MIB << 20) % 2 == 0

    proxy = fault_proxy(lambda m, p, r, n: "503" if even_part(r) and n < 2 else "forward")
    code, reason, output = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 0, reason + output
    assert proxy.ranged_gets("503"), "the proxy never injected a 503"
    _entry_matches(tmp_path, blob_model)


def test_a_connection_dropped_mid_part_is_retried_and_the_fetch_succeeds(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    # The first try of every ranged GET sends half the body, then closes the connection.
    proxy = fault_proxy(lambda m, p, r, n: "drop-mid-body" if r and n == 0 else "forward")
    code, reason, output = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 0, reason + output
    assert len(proxy.ranged_gets("drop-mid-body")) >= 5  # 5 parts of weights.bin at least
    _entry_matches(tmp_path, blob_model)


def test_a_200_to_a_ranged_get_is_an_error_and_leaves_no_entry(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    proxy = fault_proxy(lambda m, p, r, n: "ignore-range" if r else "forward")
    code, reason, _ = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 1
    assert reason.startswith("FetchFailed: ")
    assert "answered HTTP 200" in reason and "ignores Range requests" in reason
    _no_entry(tmp_path)


def test_a_body_always_cut_short_is_an_error_and_leaves_no_entry(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    proxy = fault_proxy(lambda m, p, r, n: "truncate" if r else "forward")
    code, reason, _ = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 1
    assert "failed after 4 attempts" in reason
    _no_entry(tmp_path)


def test_a_bucket_in_another_region_says_which_region_to_set(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    # As AWS answers when a regional endpoint is asked for a bucket of another region.
    proxy = fault_proxy(lambda m, p, r, n: "301")
    code, reason, output = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint,
                                region="us-east-2")
    assert code == 1
    assert "PermanentRedirect" in reason
    assert "set spec.model.source.s3.region to eu-west-1" in reason, reason
    _no_entry(tmp_path)
    for text in (reason, output):
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in text


def test_a_server_in_another_region_is_followed_by_region_discovery(
    tmp_path: Path, helpers: Any, write_config: Any,
) -> None:
    with MinioServer(tmp_path / "minio", region="us-west-2") as server:
        client = server.client()
        client.create_bucket(Bucket="models",
                             CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        client.put_object(Bucket="models", Key="faults/v1/config.json", Body=b"{}")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=server.access_key,
                   AWS_SECRET_ACCESS_KEY=server.secret_key)
        env.pop("AWS_SESSION_TOKEN", None)
        # The spec names the wrong region: the server's answer names the right one.
        code, reason, output = _run(helpers, write_config, tmp_path, env, server.endpoint,
                                    region="eu-north-1")
    assert code == 0, reason + output
    assert (tmp_path / "cache" / "faults" / "v1" / "config.json").read_bytes() == b"{}"


def test_a_listing_in_the_gcs_xml_namespace_still_lists_the_objects(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    proxy = fault_proxy(lambda m, p, r, n: "gcs-namespace" if "list-type" in p else "forward")
    code, reason, output = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 0, reason + output
    assert [s for s in proxy.seen if s.action == "gcs-namespace"], "no listing was rewritten"
    _entry_matches(tmp_path, blob_model)


def test_bytes_corrupted_on_the_way_fail_the_etag_check_and_leave_no_entry(
    blob_model: Path, fault_proxy: Any, helpers: Any, write_config: Any,
    s3_env: dict[str, str], tmp_path: Path,
) -> None:
    # config.json is fetched in one GET and its ETag is its MD5: a flipped byte is caught
    # although the size is right.
    proxy = fault_proxy(lambda m, p, r, n: "corrupt" if r and p.endswith("config.json")
                        else "forward")
    code, reason, _ = _run(helpers, write_config, tmp_path, s3_env, proxy.endpoint)
    assert code == 1
    assert "does not match the ETag" in reason, reason
    _no_entry(tmp_path)
