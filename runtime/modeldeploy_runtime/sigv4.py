"""AWS Signature Version 4 for S3 GET requests, with only the standard library.

botocore costs about half a second of import per init container for what, in `fetch`,
is two kinds of GET. Credentials come only from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and optionally AWS_SESSION_TOKEN.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from modeldeploy_runtime.errors import FetchError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An access key pair (and session token); repr never shows the secret."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key[:4]}…, secret_key=***)"


def credentials_from_env(env: Mapping[str, str] = os.environ) -> Credentials:
    """Read the key pair from the environment or say which variables to set."""
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise FetchError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the operator "
            "maps model.source.s3.credentialsSecret to them)"
        )
    return Credentials(access, secret, env.get("AWS_SESSION_TOKEN") or None)


def quote(value: str, safe: str = "") -> str:
    """RFC 3986 encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay literal."""
    return urllib.parse.quote(value, safe=safe + "-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign(
    creds: Credentials, region: str, host: str, path: str, query: Mapping[str, str],
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers (Authorization, x-amz-*) for `GET https://host{path}?{query}`, path unencoded."""
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    names = sorted(headers)
    canonical = "\n".join([
        "GET",
        quote(path, safe="/"),
        "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(query.items())),
        "".join(f"{n}:{headers[n].strip()}\n" for n in names),
        ";".join(names),
        EMPTY_SHA256,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode(), day), region), "s3"),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    del headers["host"]  # http.client sends Host itself
    return headers
