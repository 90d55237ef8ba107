"""Parallel ranged downloads of one S3 prefix into a staging directory.

boto3's TransferManager reads each part in 256 KiB pieces and funnels every write through
one IO thread, and importing botocore costs about half a second per init container. Here
requests are signed with SigV4 from the standard library (sigv4.py); worker threads fetch
large byte ranges over persistent http.client connections, `readinto` a reusable buffer
and `pwrite` it at its offset, so a byte is copied once between socket and page cache.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from modeldeploy_contract.config import S3Source

from modeldeploy_runtime import sigv4
from modeldeploy_runtime.cache import safe_relative
from modeldeploy_runtime.errors import FetchError

# Measured on 2 busy cores against a loopback MinIO (bench/README.md): 8 streams of 32 MiB
# ranges beat both 4 (less CPU share when cores are contended) and 16 x 16 MiB (GIL and
# request overhead). Both can be overridden from the environment.
PART_SIZE = int(os.environ.get("MODELDEPLOY_S3_PART_MIB", "32")) << 20
WORKERS = int(os.environ.get("MODELDEPLOY_S3_CONCURRENCY", "0")) or min(
    16, max(8, 2 * (os.cpu_count() or 2)))
READ_BUFFER = 4 << 20
ATTEMPTS = 3
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


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


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to send requests: path-style URLs, SigV4-signed."""

    scheme: str
    netloc: str
    region: str
    bucket: str
    creds: sigv4.Credentials

    def path(self, key: str = "") -> str:
        """The unencoded request path of an object (or of the bucket when key is empty)."""
        return f"/{self.bucket}/{key}" if key else f"/{self.bucket}"

    def connect(self) -> http.client.HTTPConnection:
        """A new persistent connection to the endpoint."""
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.netloc, timeout=60)
        return http.client.HTTPConnection(self.netloc, timeout=60)

    def get(self, conn: http.client.HTTPConnection, key: str, query: Mapping[str, str],
            extra: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
        """Send one signed GET on `conn` and return the response (body unread)."""
        path = self.path(key)
        headers = sigv4.sign(self.creds, self.region, self.netloc, path, query)
        headers.update(extra or {})
        target = sigv4.quote(path, safe="/")
        if query:
            target += "?" + "&".join(f"{sigv4.quote(k)}={sigv4.quote(v)}"
                                     for k, v in sorted(query.items()))
        conn.request("GET", target, headers=headers)
        return conn.getresponse()


def make_endpoint(source: S3Source, env: Mapping[str, str] = os.environ) -> Endpoint:
    """The endpoint for a source; credentials only from the environment."""
    region = source.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or (
        "us-east-1")
    url = urllib.parse.urlsplit(source.endpoint or f"https://s3.{region}.amazonaws.com")
    if url.scheme not in ("http", "https") or not url.netloc:
        raise FetchError(
            f"model.source.s3.endpoint {source.endpoint!r} is not an http(s) URL; "
            "use e.g. http://minio.storage:9000"
        )
    return Endpoint(url.scheme, url.netloc, region, source.bucket,
                    sigv4.credentials_from_env(env))


def _s3_error(response: http.client.HTTPResponse) -> str:
    body = response.read()
    try:
        code = ElementTree.fromstring(body).findtext("Code") or "Unknown"
    except ElementTree.ParseError:
        code = "Unknown"
    return f"HTTP {response.status} {code}"


def list_files(endpoint: Endpoint, source: S3Source) -> list[RemoteFile]:
    """Every object under the prefix; an empty prefix is an error, not an empty model."""
    where = f"s3://{source.bucket}/{source.prefix}"
    files: list[RemoteFile] = []
    query = {"list-type": "2", "prefix": source.prefix}
    conn = endpoint.connect()
    try:
        while True:
            response = endpoint.get(conn, "", query)
            if response.status != 200:
                raise FetchError(
                    f"listing {where} failed: {_s3_error(response)}; check the bucket, prefix, "
                    "endpoint and that AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY may list it"
                )
            root = ElementTree.fromstring(response.read())
            for item in root.iter(_NS + "Contents"):
                key = item.findtext(_NS + "Key") or ""
                if key.endswith("/"):
                    continue  # "directory" placeholder objects carry no model data
                rel = safe_relative(key[len(source.prefix):].lstrip("/"))
                files.append(RemoteFile(key, rel, int(item.findtext(_NS + "Size") or 0)))
            token = root.findtext(_NS + "NextContinuationToken")
            if root.findtext(_NS + "IsTruncated") != "true" or not token:
                break
            query = dict(query, **{"continuation-token": token})
    except (OSError, http.client.HTTPException, ElementTree.ParseError) as error:
        raise FetchError(
            f"listing {where} failed: {type(error).__name__}: {error}; check that the endpoint "
            f"{endpoint.scheme}://{endpoint.netloc} is reachable and speaks S3"
        ) from None
    finally:
        conn.close()
    if not files:
        raise FetchError(
            f"no objects under {where}: check model.source.s3.prefix (it should end with '/')"
        )
    return files


def plan_parts(files: Sequence[RemoteFile], part_size: int = PART_SIZE) -> list[Part]:
    """Split files into ranges, largest files first so the tail of the transfer stays busy."""
    parts: list[Part] = []
    for remote in sorted(files, key=lambda f: -f.size):
        for start in range(0, remote.size, part_size):
            parts.append(Part(remote, start, min(start + part_size, remote.size)))
    return parts


class _Connections(threading.local):
    conn: http.client.HTTPConnection | None = None
    buffer: bytearray | None = None


def _fetch_range(local: _Connections, endpoint: Endpoint, part: Part, fd: int) -> None:
    if local.buffer is None:
        local.buffer = bytearray(READ_BUFFER)
    view = memoryview(local.buffer)
    where = f"GET {part.file.key} bytes {part.start}-{part.end - 1}"
    for attempt in range(ATTEMPTS):
        try:
            if local.conn is None:
                local.conn = endpoint.connect()
            response = endpoint.get(local.conn, part.file.key, {},
                                    {"Range": f"bytes={part.start}-{part.end - 1}"})
            if response.status not in (200, 206):
                raise FetchError(f"{where}: {_s3_error(response)}; check the credentials' "
                                 "read access to the object")
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
                    f"{where} failed after {ATTEMPTS} attempts: {type(error).__name__}: {error}"
                ) from None
            time.sleep(0.2 * (attempt + 1))


@dataclass(frozen=True)
class Transfer:
    """What one download moved and how long it took."""

    files: list[RemoteFile]
    bytes: int
    seconds: float


def download(
    endpoint: Endpoint,
    source: S3Source,
    staging: Path,
    workers: int = WORKERS,
    part_size: int = PART_SIZE,
    on_part: Callable[[Part], None] | None = None,
) -> Transfer:
    """Download every object under the prefix into `staging`; every failure is collected."""
    started = time.monotonic()
    files = list_files(endpoint, source)
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
                pool.submit(_fetch_range, local, endpoint, p, fds[p.file.key]): p
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
            raise FetchError(
                f"download from s3://{source.bucket}/{source.prefix} failed: {errors[0]}{more}"
            )
    finally:
        for fd in fds.values():
            os.close(fd)
    return Transfer(files, sum(f.size for f in files), time.monotonic() - started)


def iter_sizes(files: Sequence[RemoteFile]) -> Iterator[tuple[str, int]]:
    """(relative path, size) pairs, for the cache manifest."""
    for remote in files:
        yield remote.rel, remote.size
