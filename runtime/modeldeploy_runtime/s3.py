"""Parallel ranged downloads of one S3 prefix into a staging directory, through botocore.

botocore does what must be right: the default credential chain (environment, shared
config/credentials and profiles, the web identity token file of IRSA, container credentials
of ECS / EKS Pod Identity, instance metadata), unsigned requests for public buckets, region
redirects, addressing styles, retries with backoff on throttling and 5xx, pagination.

What makes it fast is kept from the hand-written downloader it replaces: worker threads
issue large ranged GETs (32 MiB) over one pooled client, `readinto` a reusable buffer and
`pwrite` it at its offset, so no chunk queue or single writer thread sits between the
sockets and the page cache (boto3's TransferManager reads 256 KiB pieces through one IO
thread). bench/README.md has the measurements, including the CRT client.

Integrity: every range is asked with `If-Match: <ETag from the listing>`, so all parts come
from one version of the object; an answer that is not `206` with exactly the requested
`Content-Range` is refused (a server or proxy that ignores `Range` would otherwise write the
wrong bytes); a body shorter than its Content-Length is refused; an object fetched in one
GET whose ETag is a plain MD5 is checked against it; file sizes are checked against the
listing before the cache entry is committed, and model.sha256 when given.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from modeldeploy_contract.config import S3Source

from modeldeploy_runtime.cache import safe_relative
from modeldeploy_runtime.errors import FetchError, IntegrityError, SourceUnavailable

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

# Measured on 2 busy cores against a loopback MinIO (bench/README.md): 8 streams of 32 MiB
# ranges. Both can be overridden from the environment.
PART_SIZE = int(os.environ.get("MODELDEPLOY_S3_PART_MIB", "32")) << 20
WORKERS = int(os.environ.get("MODELDEPLOY_S3_CONCURRENCY", "0")) or min(
    16, max(8, 2 * (os.cpu_count() or 2)))
READ_BUFFER = 4 << 20
# botocore retries each request (throttling, 5xx, connection errors) this many times in all;
# a body cut mid-stream is retried by the part loop below, which botocore cannot see.
REQUEST_ATTEMPTS = 5
PART_ATTEMPTS = 4
BACKOFF_SECONDS = 0.2

NO_CREDENTIALS_HINT = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(spec.model.source.s3.credentialsSecret), or run the pod as a ServiceAccount with an "
    "IRSA / Pod Identity role (spec.runtime.serviceAccountName), or use a profile or instance "
    "role; for a public bucket set spec.model.source.s3.anonymous: true"
)


@dataclass(frozen=True)
class RemoteFile:
    """One object under the prefix: its key, its path relative to the prefix, size, ETag."""

    key: str
    rel: str
    size: int
    etag: str = ""


@dataclass(frozen=True)
class Part:
    """One byte range [start, end) of one file."""

    file: RemoteFile
    start: int
    end: int

    @property
    def whole(self) -> bool:
        """True when this part is the whole object (one GET, so its MD5 ETag can be checked)."""
        return self.start == 0 and self.end == self.file.size


def addressing_style(source: S3Source) -> Literal["auto", "path", "virtual"]:
    """Path-style for a custom endpoint (MinIO, Ceph: no per-bucket DNS), else botocore's."""
    if source.addressing_style is not None:
        return source.addressing_style
    return "path" if source.endpoint else "auto"


def make_client(source: S3Source, workers: int = WORKERS) -> S3Client:
    """An S3 client for the source, with the default credential chain (or unsigned requests).

    Nothing here reads a secret: botocore resolves the credentials when the first request is
    signed. Raises FetchError when there are none and the source is not anonymous.
    """
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    if source.endpoint is not None and not source.endpoint.startswith(("http://", "https://")):
        raise FetchError(
            f"model.source.s3.endpoint {source.endpoint!r} is not an http(s) URL; "
            "use e.g. http://minio.storage:9000"
        )
    session = botocore.session.get_session()
    config = Config(
        signature_version=UNSIGNED if source.anonymous else None,
        s3={"addressing_style": addressing_style(source)},
        retries={"mode": source.retry_mode or "standard", "max_attempts": REQUEST_ATTEMPTS},
        max_pool_connections=workers + 2,
        connect_timeout=10,
        read_timeout=60,
        tcp_keepalive=True,
        # Ranged GETs carry no whole-object checksum to validate; integrity is checked below.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    if not source.anonymous:
        try:
            # Resolves which provider applies; web identity defers the STS call to first use.
            credentials = session.get_credentials()
        except Exception as error:  # any provider may fail in its own way (a bad agent reply)
            raise explain(error, "resolving the AWS credentials", source) from None
        if credentials is None:
            raise FetchError(NO_CREDENTIALS_HINT)
    region = source.region or session.get_config_variable("region") or None
    client = session.create_client(
        "s3", region_name=region, endpoint_url=source.endpoint, config=config
    )
    return cast("S3Client", client)


def _where(source: S3Source) -> str:
    return f"s3://{source.bucket}/{source.prefix}"


def explain(error: Exception, what: str, source: S3Source) -> FetchError:
    """A botocore error as "what failed: why; what to do", never with a credential in it."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    region = source.region or "the default region"
    if isinstance(error, NoCredentialsError):
        return FetchError(f"{what} failed: {NO_CREDENTIALS_HINT}")
    if isinstance(error, ConnectionError | ReadTimeoutError | ResponseStreamingError):
        return SourceUnavailable(
            f"{what} failed after {REQUEST_ATTEMPTS} attempts: {type(error).__name__}: "
            f"{str(error)[:200]}; check that the endpoint {source.endpoint or 'of AWS S3'} is "
            "reachable from the pod, then retry"
        )
    if not isinstance(error, ClientError):
        return FetchError(f"{what} failed: {type(error).__name__}: {str(error)[:200]}")
    info: dict[str, Any] = dict(error.response.get("Error", {}))
    meta: dict[str, Any] = dict(error.response.get("ResponseMetadata", {}))
    code = str(info.get("Code") or meta.get("HTTPStatusCode") or "Unknown")
    status = int(meta.get("HTTPStatusCode") or 0)
    message = str(info.get("Message") or "")[:200]
    headers: dict[str, str] = dict(meta.get("HTTPHeaders") or {})
    if error.operation_name == "AssumeRoleWithWebIdentity":
        role = os.environ.get("AWS_ROLE_ARN", "<unset>")
        return FetchError(
            f"{what} failed: exchanging the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE) "
            f"for role {role} was refused: {code}: {message}; the projected service-account "
            "token may be expired or have the wrong audience (sts.amazonaws.com), or the "
            "role's trust policy does not name this ServiceAccount"
        )
    right_region = headers.get("x-amz-bucket-region") or info.get("Region")
    if code in {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint",
                "IllegalLocationConstraintException"} or status == 301:
        where = f"in region {right_region!r}" if right_region else "in another region"
        return FetchError(
            f"{what} failed: {code}: bucket {source.bucket!r} is {where}, not {region}; set "
            f"spec.model.source.s3.region to {right_region or 'the bucket region'}"
        )
    if code == "NoSuchBucket":
        return FetchError(
            f"{what} failed: NoSuchBucket: bucket {source.bucket!r} does not exist at "
            f"{source.endpoint or 'AWS S3'}; check spec.model.source.s3.bucket and endpoint"
        )
    if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "InvalidToken", "TokenRefreshRequired"}:
        return FetchError(
            f"{what} failed: {code}: the credentials were refused; check the credentials "
            "Secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or the pod's role"
        )
    if code in {"AccessDenied", "AllAccessDisabled"} or status == 403:
        how = ("unsigned requests are not allowed: the bucket is not public (or does not "
               "exist); check the bucket name, or drop anonymous and give the pod "
               "credentials") if source.anonymous else (
               "check that the credentials or role may s3:ListBucket and s3:GetObject "
               f"{_where(source)}")
        return FetchError(f"{what} failed: {code}: {message}; {how}")
    if code == "PreconditionFailed" or status == 412:
        return SourceUnavailable(
            f"{what} failed: the object changed during the download (its ETag no longer "
            "matches the listing); fetch again once the upload is complete"
        )
    if status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout"}:
        return SourceUnavailable(
            f"{what} failed after {REQUEST_ATTEMPTS} attempts: {code}: {message}; the store is "
            "overloaded or unavailable, retry later or set spec.model.source.s3.retryMode: "
            "adaptive"
        )
    return FetchError(f"{what} failed: {code}: {message}")


def list_files(client: S3Client, source: S3Source) -> list[RemoteFile]:
    """Every object under the prefix; an empty prefix is an error, not an empty model."""
    from botocore.exceptions import BotoCoreError, ClientError

    files: list[RemoteFile] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=source.bucket, Prefix=source.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                if key.endswith("/"):
                    continue  # "directory" placeholder objects carry no model data
                rel = safe_relative(key[len(source.prefix):].lstrip("/"))
                files.append(RemoteFile(key, rel, int(item.get("Size", 0)),
                                        item.get("ETag", "")))
    except (BotoCoreError, ClientError) as error:
        raise explain(error, f"listing {_where(source)}", source) from None
    if not files:
        raise FetchError(
            f"no objects under {_where(source)}: check model.source.s3.prefix (it should end "
            "with '/')"
        )
    return files


def plan_parts(files: Sequence[RemoteFile], part_size: int = PART_SIZE) -> list[Part]:
    """Split files into ranges, largest files first so the tail of the transfer stays busy."""
    parts: list[Part] = []
    for remote in sorted(files, key=lambda f: -f.size):
        for start in range(0, remote.size, part_size):
            parts.append(Part(remote, start, min(start + part_size, remote.size)))
    return parts


def _plain_md5(etag: str) -> str | None:
    """The MD5 an ETag stands for, or None (multipart or encrypted objects: not an MD5)."""
    value = etag.strip('"').lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def _socket_readinto(body: StreamingBody) -> Callable[[memoryview], int]:
    """The fastest `readinto` under a botocore body: http.client's own, one copy from the
    socket into our buffer.

    botocore's StreamingBody.readinto goes through urllib3 2's `read(amt)`, which allocates
    a bytes object per call and copies it through its internal buffer; measured in-process
    on 600 MB from a loopback MinIO, 250 MB/s that way against 640 MB/s reading the
    http.client response directly. botocore does not decode the body (no content decoding
    for S3 streams) and the length is checked here, so nothing is skipped; if urllib3's
    internals ever change shape, the public path is used.
    """
    raw = getattr(body, "_raw_stream", None)
    inner = getattr(raw, "_fp", None)
    if isinstance(inner, http.client.HTTPResponse):
        return inner.readinto
    # (the stubs say IO[bytes]; botocore's readinto takes any writable buffer)
    return body.readinto  # type: ignore[return-value]


def _release(body: StreamingBody, complete: bool) -> None:
    """Hand a fully read connection back to the pool; close one that broke or was cut."""
    raw = getattr(body, "_raw_stream", None)
    if complete and raw is not None and hasattr(raw, "release_conn"):
        raw.release_conn()
    else:
        body.close()


class _Buffers(threading.local):
    buffer: bytearray | None = None


def _fetch_part(client: S3Client, source: S3Source, part: Part, fd: int,
                local: _Buffers) -> None:
    """GET one range into its place in the file; a body cut short is retried here."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    if local.buffer is None:
        local.buffer = bytearray(READ_BUFFER)
    view = memoryview(local.buffer)
    last = part.end - 1
    what = f"GET s3://{source.bucket}/{part.file.key} bytes {part.start}-{last}"
    expected_range = f"bytes {part.start}-{last}/{part.file.size}"
    md5 = _plain_md5(part.file.etag) if part.whole else None
    for attempt in range(PART_ATTEMPTS):
        offset = -1
        digest = hashlib.md5(usedforsecurity=False) if md5 else None
        try:
            rng = f"bytes={part.start}-{last}"
            response = (
                client.get_object(Bucket=source.bucket, Key=part.file.key, Range=rng,
                                  IfMatch=part.file.etag)
                if part.file.etag
                else client.get_object(Bucket=source.bucket, Key=part.file.key, Range=rng)
            )
            status = response["ResponseMetadata"]["HTTPStatusCode"]
            body = response["Body"]
            try:
                if status != 206 or response.get("ContentRange") != expected_range:
                    raise IntegrityError(
                        f"{what}: the server answered HTTP {status} with Content-Range "
                        f"{response.get('ContentRange')!r} instead of {expected_range!r}: it "
                        "(or a proxy in between) ignores Range requests, which would write the "
                        "wrong bytes; fix the endpoint or the proxy"
                    )
                offset = part.start
                readinto = _socket_readinto(body)
                while offset < part.end:
                    got = readinto(view[: min(READ_BUFFER, part.end - offset)])
                    if not got:
                        raise IncompleteReadError(actual_bytes=offset - part.start,
                                                  expected_bytes=part.end - part.start)
                    os.pwrite(fd, view[:got], offset)
                    if digest is not None:
                        digest.update(view[:got])
                    offset += got
            finally:
                _release(body, complete=offset == part.end)
            if digest is not None and digest.hexdigest() != md5:
                raise IntegrityError(
                    f"{what}: the body's MD5 {digest.hexdigest()} does not match the ETag "
                    f"{md5}: the bytes were corrupted on the way; fetch again"
                )
            return
        except (ConnectionError, ReadTimeoutError, ResponseStreamingError,
                IncompleteReadError, OSError, http.client.HTTPException) as error:
            if attempt == PART_ATTEMPTS - 1:
                raise SourceUnavailable(
                    f"{what} failed after {PART_ATTEMPTS} attempts: {type(error).__name__}: "
                    f"{str(error)[:200]}; the connection keeps breaking mid-transfer, retry "
                    "later"
                ) from None
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        except (BotoCoreError, ClientError) as error:
            raise explain(error, what, source) from None


@dataclass(frozen=True)
class Transfer:
    """What one download moved and how long it took."""

    files: list[RemoteFile]
    bytes: int
    seconds: float


def download(
    client: S3Client,
    source: S3Source,
    staging: Path,
    workers: int = WORKERS,
    part_size: int = PART_SIZE,
    on_part: Callable[[Part], None] | None = None,
) -> Transfer:
    """Download every object under the prefix into `staging`; every failure is collected."""
    started = time.monotonic()
    files = list_files(client, source)
    fds: dict[str, int] = {}
    try:
        for remote in files:
            path = staging / remote.rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fds[remote.key] = fd
            os.ftruncate(fd, remote.size)
        local = _Buffers()
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-get") as pool:
            futures = {
                pool.submit(_fetch_part, client, source, p, fds[p.file.key], local): p
                for p in plan_parts(files, part_size)
            }
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    errors.append(error)
                elif on_part is not None:
                    on_part(futures[future])
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            kind = type(first) if isinstance(first, FetchError) else FetchError
            raise kind(f"download from {_where(source)} failed: {first}{more}")
    finally:
        for fd in fds.values():
            os.close(fd)
    return Transfer(files, sum(f.size for f in files), time.monotonic() - started)


def iter_sizes(files: Sequence[RemoteFile]) -> Iterator[tuple[str, int]]:
    """(relative path, size) pairs, for the cache manifest."""
    for remote in files:
        yield remote.rel, remote.size
