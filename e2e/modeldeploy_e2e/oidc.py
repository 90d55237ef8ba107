"""Web identity for S3 without AWS: MinIO's STS (AssumeRoleWithWebIdentity) trusting an OIDC
issuer, as IAM trusts an EKS cluster's issuer for IRSA.

Two issuers: `LocalIssuer` (a discovery document and JWKS served on loopback, tokens signed
here with openssl, for runtime tests that need no cluster) and the kube-apiserver itself
(`minio_openid_env` with its discovery URL, for the IRSA e2e).

    with LocalIssuer(tmp_path / "issuer") as issuer:
        env = minio_openid_env(issuer.discovery_url, policy="readwrite")
        with MinioServer(tmp_path / "minio", extra_env=env) as s3:
            arn = role_arn(s3)
            token = issuer.token(subject="system:serviceaccount:ns:sa", lifetime=3600)
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from modeldeploy_e2e import loopback
from modeldeploy_e2e.s3 import LOOPBACK, MinioServer

AUDIENCE = "sts.amazonaws.com"  # what the EKS webhook puts in the projected token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def minio_openid_env(config_url: str, policy: str, audience: str = AUDIENCE) -> dict[str, str]:
    """MinIO settings trusting the issuer behind `config_url` for tokens of `audience`."""
    return {
        "MINIO_IDENTITY_OPENID_CONFIG_URL": config_url,
        "MINIO_IDENTITY_OPENID_CLIENT_ID": audience,
        "MINIO_IDENTITY_OPENID_ROLE_POLICY": policy,
        "MINIO_IDENTITY_OPENID_DISPLAY_NAME": "modeldeploy-tests",
    }


def role_arn(server: MinioServer, timeout: float = 10.0) -> str:
    """The role ARN MinIO made for the OpenID provider (it prints it at start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"arn:minio:iam:[^\s\"']*:role/[A-Za-z0-9_-]+",
                          server.log_path.read_text(errors="replace"))
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise RuntimeError(f"MinIO printed no role ARN; see {server.log_path}")


class LocalIssuer:
    """An OIDC issuer on loopback: discovery, JWKS, and RS256 tokens signed with openssl."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.key = self.directory / "issuer.key"
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the issuer first"
        return f"http://{LOOPBACK}:{self._server.server_port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def _jwks(self) -> dict[str, Any]:
        modulus = subprocess.run(
            ["openssl", "rsa", "-in", str(self.key), "-modulus", "-noout"],
            check=True, capture_output=True, text=True,
        ).stdout.strip().split("=", 1)[1]
        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "test",
                          "n": _b64(bytes.fromhex(modulus)), "e": _b64((65537).to_bytes(3))}]}

    def start(self) -> LocalIssuer:
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True,
                       capture_output=True)
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    doc: dict[str, Any] = {
                        "issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks",
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/jwks":
                    doc = issuer._jwks()
                else:
                    self.send_error(404)
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = loopback.serve(Handler)
        return self

    def token(self, subject: str, lifetime: float = 3600, audience: str = AUDIENCE,
              issued_ago: float = 0) -> str:
        """A signed JWT; a negative `lifetime` makes one that has already expired."""
        now = int(time.time() - issued_ago)
        header = _b64(json.dumps({"alg": "RS256", "kid": "test", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"iss": self.url, "sub": subject, "aud": audience,
                                  "iat": now, "nbf": now, "exp": int(now + lifetime)}).encode())
        signed = f"{header}.{claims}".encode()
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signed, check=True, capture_output=True).stdout
        return f"{header}.{claims}.{_b64(signature)}"

    def stop(self) -> None:
        if self._server is not None:
            loopback.stop(self._server)
            self._server = None

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
