"""The MinIO helper serves real S3 on loopback with generated credentials."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import botocore.exceptions
import pytest
from modeldeploy_e2e import s3


def test_minio_binary_error_names_the_make_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELDEPLOY_MINIO", str(tmp_path / "absent"))
    with pytest.raises(s3.MinioError, match="make minio"):
        s3.minio_binary()


def test_uploaded_directory_reads_back_byte_for_byte(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}')
    (model / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)

    with s3.MinioServer(tmp_path / "minio") as server:
        assert server.endpoint.startswith("http://127.0.0.1:")
        s3.create_bucket(server, "models")
        s3.create_bucket(server, "models")  # a second create is harmless
        keys = s3.upload_directory(server, "models", "tiny/v1/", model)

        assert keys == ["tiny/v1/config.json", "tiny/v1/sub/weights.bin"]
        body = server.client().get_object(Bucket="models", Key="tiny/v1/sub/weights.bin")
        assert body["Body"].read() == bytes(range(256)) * 40


def test_wrong_secret_is_refused(tmp_path: Path) -> None:
    with s3.MinioServer(tmp_path / "minio") as server:
        server.secret_key = "not-the-secret"
        with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
            server.client().list_buckets()


def test_server_stops_on_exit(tmp_path: Path) -> None:
    with s3.MinioServer(tmp_path / "minio") as server:
        url = f"{server.endpoint}/minio/health/live"
        with urllib.request.urlopen(url, timeout=2) as response:
            assert response.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)
