"""Every AWS identity the fetch takes, against a real MinIO: web identity (IRSA) through
MinIO's STS trusting a loopback OIDC issuer, container credentials (ECS / EKS Pod Identity),
a shared-config profile, and unsigned requests to a public bucket. No static keys in the
environment unless a test says so, and no secret in any output."""

from __future__ import annotations

import http.server
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e import loopback
from modeldeploy_e2e.oidc import LocalIssuer, minio_openid_env, role_arn
from modeldeploy_e2e.s3 import MinioServer, create_bucket

pytestmark = pytest.mark.s3

SUBJECT = "system:serviceaccount:models:fetcher"


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalIssuer, MinioServer]]:
    """A MinIO whose STS trusts a loopback OIDC issuer, with s3://models/id/v1/ filled."""
    tmp = tmp_path_factory.mktemp("sts")
    with LocalIssuer(tmp / "issuer") as issuer, MinioServer(
        tmp / "minio", extra_env=minio_openid_env(issuer.discovery_url, "readwrite"),
        quiet=False,
    ) as server:
        create_bucket(server, "models")
        client = server.client()
        client.put_object(Bucket="models", Key="id/v1/config.json", Body=b'{"a": 1}')
        client.put_object(Bucket="models", Key="id/v1/weights.bin", Body=os.urandom(300_000))
        yield issuer, server


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process env without any AWS setting: no keys, no profile files, no IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "no-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
               AWS_EC2_METADATA_DISABLED="true", **extra)
    return env


def _fetch(helpers: Any, write_config: Any, tmp_path: Path, env: dict[str, str],
           endpoint: str, **s3: Any) -> tuple[int, str, str]:
    doc = helpers.runtime_config("id", source={"s3": {
        "bucket": "models", "prefix": "id/v1/", "endpoint": endpoint, **s3}})
    log = tmp_path / "term"
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)), "--cache-root",
                             str(tmp_path / "cache"), "--termination-log", str(log), env=env)
    reason = log.read_text() if log.exists() else ""
    return result.returncode, reason, result.stdout + result.stderr


def _irsa_env(tmp_path: Path, server: MinioServer, token: str) -> dict[str, str]:
    """What the EKS pod identity webhook injects, with the STS endpoint on loopback."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    return _bare_env(tmp_path, AWS_ROLE_ARN=role_arn(server),
                     AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
                     AWS_ENDPOINT_URL_STS=server.endpoint, AWS_REGION="us-east-1")


def test_a_web_identity_token_is_exchanged_for_credentials_and_the_fetch_succeeds(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    issuer, server = sts
    token = issuer.token(SUBJECT)
    env = _irsa_env(tmp_path, server, token)
    code, reason, output = _fetch(helpers, write_config, tmp_path, env, server.endpoint)
    assert code == 0, reason + output
    assert (tmp_path / "cache" / "id" / "v1" / "config.json").read_bytes() == b'{"a": 1}'
    assert token not in output


def test_an_expired_web_identity_token_says_so_and_leaves_no_entry(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    issuer, server = sts
    token = issuer.token(SUBJECT, lifetime=60, issued_ago=600)
    env = _irsa_env(tmp_path, server, token)
    code, reason, output = _fetch(helpers, write_config, tmp_path, env, server.endpoint)
    assert code == 1
    assert "exchanging the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)" in reason
    assert "expired" in reason.lower()
    assert not (tmp_path / "cache" / "id" / "v1").exists()
    for part in token.split("."):
        assert part not in reason + output


def test_container_credentials_as_eks_pod_identity_serves_them(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    _, server = sts
    auth = "pod-identity-auth-token"
    # Temporary credentials with a session token, as the Pod Identity agent hands out.
    import boto3

    issued = boto3.client(
        "sts", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
    ).assume_role(RoleArn="arn:aws:iam::000000000000:role/models", RoleSessionName="agent")
    creds = issued["Credentials"]
    (tmp_path / "auth").write_text(auth)
    asked: list[str | None] = []

    class Agent(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.headers.get("Authorization"))
            body = json.dumps({"AccessKeyId": creds["AccessKeyId"],
                               "SecretAccessKey": creds["SecretAccessKey"],
                               "Token": creds["SessionToken"],
                               "Expiration": creds["Expiration"].isoformat()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    agent = loopback.serve(Agent)
    try:
        env = _bare_env(
            tmp_path,
            AWS_CONTAINER_CREDENTIALS_FULL_URI=f"http://127.0.0.1:{agent.server_port}/v1/creds",
            AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(tmp_path / "auth"),
        )
        code, reason, output = _fetch(helpers, write_config, tmp_path, env, server.endpoint)
    finally:
        loopback.stop(agent)
    assert code == 0, reason + output
    assert asked and asked[0] == auth
    assert creds["SecretAccessKey"] not in output and creds["SessionToken"] not in output


def test_a_shared_config_profile_is_used(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    _, server = sts
    env = _bare_env(tmp_path, AWS_PROFILE="models")
    Path(env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        f"[models]\naws_access_key_id = {server.access_key}\n"
        f"aws_secret_access_key = {server.secret_key}\n")
    code, reason, output = _fetch(helpers, write_config, tmp_path, env, server.endpoint)
    assert code == 0, reason + output
    assert server.secret_key not in output


def test_a_public_bucket_is_read_with_unsigned_requests(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    _, server = sts
    client = server.client()
    client.create_bucket(Bucket="public")
    client.put_bucket_policy(Bucket="public", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket"],
             "Resource": ["arn:aws:s3:::public"]},
            {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
             "Resource": ["arn:aws:s3:::public/*"]},
        ]}))
    client.put_object(Bucket="public", Key="id/v1/config.json", Body=b"{}")
    env = _bare_env(tmp_path)
    doc_source = {"bucket": "public", "anonymous": True}
    code, reason, output = _fetch(helpers, write_config, tmp_path, env, server.endpoint,
                                  **doc_source)
    assert code == 0, reason + output
    assert (tmp_path / "cache" / "id" / "v1" / "config.json").read_bytes() == b"{}"


def test_unsigned_requests_to_a_private_bucket_say_it_is_not_public(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    _, server = sts
    code, reason, _ = _fetch(helpers, write_config, tmp_path, _bare_env(tmp_path),
                             server.endpoint, anonymous=True)
    assert code == 1
    assert "AccessDenied" in reason and "the bucket is not public" in reason


def test_no_identity_at_all_names_every_way_to_give_one(
    sts: tuple[LocalIssuer, MinioServer], helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    _, server = sts
    code, reason, _ = _fetch(helpers, write_config, tmp_path, _bare_env(tmp_path),
                             server.endpoint)
    assert code == 1
    for hint in ("AWS_ACCESS_KEY_ID", "spec.runtime.serviceAccountName", "anonymous: true"):
        assert hint in reason
