"""Our stdlib SigV4 signer produces botocore's signature for the same request."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from modeldeploy_runtime import sigv4
from modeldeploy_runtime.errors import FetchError

NOW = dt.datetime(2026, 11, 22, 1, 2, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize(("path", "query", "token"), [
    ("/models/minilm/v1/model.safetensors", {}, None),
    ("/models", {"list-type": "2", "prefix": "minilm/v1/"}, None),
    ("/models/odd name/ü+=&.bin", {}, "session-token/with+chars="),
    ("/models", {"list-type": "2", "prefix": "a b/", "continuation-token": "x/y+z=="}, None),
])
def test_signature_matches_botocore(path: str, query: dict[str, str], token: str | None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    creds = sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = sigv4.sign(creds, "eu-west-1", "127.0.0.1:9000", path, query, now=NOW)

    url = "http://127.0.0.1:9000" + sigv4.quote(path, safe="/")
    if query:
        url += "?" + "&".join(f"{sigv4.quote(k)}={sigv4.quote(v)}" for k, v in query.items())
    request = AWSRequest(method="GET", url=url, headers={
        "x-amz-content-sha256": sigv4.EMPTY_SHA256})
    monkeypatch.setattr("botocore.auth.datetime.datetime", _Frozen)
    S3SigV4Auth(BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                token), "s3", "eu-west-1").add_auth(request)
    theirs = request.headers["Authorization"]
    assert ours["authorization"].split("Signature=")[1] == theirs.split("Signature=")[1]


class _Frozen(dt.datetime):
    @classmethod
    def utcnow(cls) -> dt.datetime:  # type: ignore[override]
        return NOW.replace(tzinfo=None)

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        return NOW if tz else NOW.replace(tzinfo=None)


def test_missing_keys_name_the_variables_and_repr_hides_the_secret() -> None:
    with pytest.raises(FetchError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        sigv4.credentials_from_env({"AWS_ACCESS_KEY_ID": "x"})
    creds = sigv4.credentials_from_env({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                        "AWS_SECRET_ACCESS_KEY": "topsecret"})
    assert "topsecret" not in repr(creds) and "topsecret" not in str(creds)
