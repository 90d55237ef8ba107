"""Parallel ranged downloads of one S3 prefix into a staging directory.

boto3's TransferManager reads each part in 256 KiB pieces and funnels every write through
one IO thread; on a few cores that, not the network, is the limit. Here botocore only lists
and presigns (local HMAC, no I/O); worker threads then fetch byte ranges over persistent
http.client connections, `readinto` a reusable buffer and `pwrite` it at its offset, so a
byte is copied once between the socket and the page cache.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from modeldeploy_runtime.cache import safe_relative
from modeldeploy_runtime.config import S3Source
from modeldeploy_runtime.errors import FetchError

PART_SIZE = 16 << 20
WORKERS = 8
READ_BUFFER = 4 << 20
ATTEMPTS = 3
_PRESIGN_SECONDS = 3600


@dataclass(frozen=True)
class RemoteFile:
    """One object under the prefix: its key, its path relative to the prefix and its size."""

    key: str
    rel: str
    size: int


@dataclass(frozen=True)
class Part:
    """One byte range [start, end) of one file."""

    file: RemoteFile
    start: int
    end: int


class S3Client(Protocol):
    """The two botocore calls this module needs (a seam for tests and other stores)."""

    def get_paginator(self, operation_name: str) -> Any: ...

    def generate_presigned_url(self, ClientMethod: str, Params: dict[str, Any], ExpiresIn: int) -> str: ...  # noqa: E501


def make_client(source: S3Source, workers: int = WORKERS) -> S3Client:
    """A botocore S3 client; credentials come only from the environment (AWS_*)."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=workers,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path" if source.endpoint else "auto"},
        signature_version="s3v4",
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=source.endpoint,
        region_name=source.region or os.environ.get("AWS_REGION") or "us-east-1",
        config=config,
    )
    return cast(S3Client, client)


def list_files(client: S3Client, source: S3Source) -> list[RemoteFile]:
    """Every object under the prefix; an empty prefix is an error, not an empty model."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    files: list[RemoteFile] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=source.bucket, Prefix=source.prefix
        ):
            for item in page.get("Contents", []):
                key: str = item["Key"]
                if key.endswith("/"):
                    continue  # "directory" placeholder objects carry no model data
                rel = safe_relative(key[len(source.prefix) :].lstrip("/"))
                files.append(RemoteFile(key=key, rel=rel, size=int(item["Size"])))
    except NoCredentialsError:
        raise FetchError(
            f"listing s3://{source.bucket}/{source.prefix} failed: no credentials; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the operator maps "
            "model.source.s3.credentialsSecret to them)"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        raise FetchError(
            f"listing s3://{source.bucket}/{source.prefix} failed: {code}; check the bucket, "
            "prefix, endpoint and that the credentials may list it"
        ) from None
    except BotoCoreError as error:
        raise FetchError(
            f"listing s3://{source.bucket}/{source.prefix} failed: {type(error).__name__}; "
            f"check that the endpoint {source.endpoint or '(AWS default)'} is reachable"
        ) from None
    if not files:
        raise FetchError(
            f"no objects under s3://{source.bucket}/{source.prefix}: check model.source.s3.prefix "
            "(it should end with '/')"
        )
    return files


def plan_parts(files: Sequence[RemoteFile], part_size: int = PART_SIZE) -> list[Part]:
    """Split files into ranges, largest files first so the tail of the transfer stays busy."""
    parts: list[Part] = []
    for remote in sorted(files, key=lambda f: -f.size):
        if remote.size == 0:
            continue
        for start in range(0, remote.size, part_size):
            parts.append(Part(remote, start, min(start + part_size, remote.size)))
    return parts


class _Connections(threading.local):
    conn: http.client.HTTPConnection | None = None
    buffer: bytearray | None = None


def _connect(url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
    if url.scheme == "https":
        return http.client.HTTPSConnection(url.netloc, timeout=60)
    return http.client.HTTPConnection(url.netloc, timeout=60)


def _fetch_range(local: _Connections, url: str, part: Part, fd: int) -> None:
    split = urllib.parse.urlsplit(url)
    target = split.path + ("?" + split.query if split.query else "")
    if local.buffer is None:
        local.buffer = bytearray(READ_BUFFER)
    view = memoryview(local.buffer)
    for attempt in range(ATTEMPTS):
        try:
            if local.conn is None:
                local.conn = _connect(split)
            local.conn.request(
                "GET", target, headers={"Range": f"bytes={part.start}-{part.end - 1}"}
            )
            response = local.conn.getresponse()
            if response.status not in (200, 206):
                response.read()
                raise FetchError(
                    f"GET {part.file.key} bytes {part.start}-{part.end - 1}: HTTP "
                    f"{response.status} {response.reason}; check the credentials' read access"
                )
            offset = part.start
            while offset < part.end:
                got = response.readinto(view[: min(READ_BUFFER, part.end - offset)])
                if not got:
                    raise ConnectionError("connection closed mid-range")
                os.pwrite(fd, view[:got], offset)
                offset += got
            return
        except (OSError, http.client.HTTPException) as error:
            if local.conn is not None:
                local.conn.close()
                local.conn = None
            if attempt == ATTEMPTS - 1:
                raise FetchError(
                    f"GET {part.file.key} bytes {part.start}-{part.end - 1} failed after "
                    f"{ATTEMPTS} attempts: {type(error).__name__}: {error}"
                ) from None
            time.sleep(0.2 * (attempt + 1))


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
    urls = {
        f.key: client.generate_presigned_url(
            "get_object", Params={"Bucket": source.bucket, "Key": f.key}, ExpiresIn=_PRESIGN_SECONDS
        )
        for f in files
    }
    fds: dict[str, int] = {}
    try:
        for remote in files:
            path = staging / remote.rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fds[remote.key] = fd
            os.ftruncate(fd, remote.size)
        local = _Connections()
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-get") as pool:
            futures = {
                pool.submit(_fetch_range, local, urls[p.file.key], p, fds[p.file.key]): p
                for p in plan_parts(files, part_size)
            }
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    errors.append(str(error))
                elif on_part is not None:
                    on_part(futures[future])
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise FetchError(f"download from s3://{source.bucket}/{source.prefix} failed: "
                             f"{errors[0]}{more}")
    finally:
        for fd in fds.values():
            os.close(fd)
    return Transfer(files, sum(f.size for f in files), time.monotonic() - started)


def iter_sizes(files: Sequence[RemoteFile]) -> Iterator[tuple[str, int]]:
    """(relative path, size) pairs, for the cache manifest."""
    for remote in files:
        yield remote.rel, remote.size
