"""A real S3 server (MinIO, built by `make minio`) on loopback, for tests and the demo.

    with MinioServer(tmp_path / "minio") as s3:
        create_bucket(s3, "models")
        upload_directory(s3, "models", "tiny/v1", model_dir)
        # s3.endpoint, s3.access_key, s3.secret_key
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import processes
from modeldeploy_e2e.netns import Relay, http_ok

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / ".cache" / "bin" / "minio"
LOOPBACK = "127.0.0.1"


class MinioError(RuntimeError):
    """MinIO is missing, did not become ready, or exited early."""


def minio_binary() -> Path:
    """Return the MinIO server binary, or raise naming the command that builds it.

    `$MODELDEPLOY_MINIO` overrides the default `.cache/bin/minio` of this checkout.
    """
    override = os.environ.get("MODELDEPLOY_MINIO")
    path = Path(override) if override else DEFAULT_BINARY
    if not (path.is_file() and os.access(path, os.X_OK)):
        origin = "$MODELDEPLOY_MINIO" if override else "the default location"
        raise MinioError(
            f"MinIO binary not found at {path} ({origin}); "
            f"run `make minio` in {REPO_ROOT} to build it from its Go module"
        )
    return path


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MinioServer:
    """Run a single-node MinIO on a loopback port for the duration of a `with` block.

    Credentials are generated per server; the data directory is kept after exit so a
    failing test can be inspected (put it under pytest's tmp_path).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        binary: Path | None = None,
        ready_timeout: float = 30.0,
        region: str | None = None,
        extra_env: dict[str, str] | None = None,
        quiet: bool = True,
        certs_dir: Path | None = None,
        netns: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        # `host` may exist only inside `netns`: any port the host's loopback has free will do
        # there (the namespace runs only the node's own few listeners).
        self._port_host = LOOPBACK if netns else host
        self.port = port if port is not None else free_port(self._port_host)
        self.binary = binary
        self.ready_timeout = ready_timeout
        # The site region MinIO insists requests are signed for (None: it accepts any).
        self.region = region
        # More MINIO_* settings, e.g. the OpenID identity provider for STS.
        self.extra_env = dict(extra_env or {})
        # Start-up messages include the role ARN of an OpenID provider (oidc.role_arn).
        self.quiet = quiet
        # MinIO's --certs-dir: CAs/*.crt are trusted for outgoing TLS (an OpenID issuer).
        self.certs_dir = certs_dir
        # MinIO wants a key of at least 8 characters; token_hex keeps both URL-safe.
        self.access_key = "md-" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        # A network namespace's path: MinIO then runs inside it (for a real node's pods,
        # `host` being an address there) and the host's boto3 clients go through a relay.
        self.netns = netns
        self._relay: Relay | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. http://127.0.0.1:39123."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MinioServer:
        """Start the server and wait until /minio/health/ready answers 200."""
        binary = self.binary if self.binary is not None else minio_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir.parent),
            # Upstream's main sets TZ=UTC before anything else; the wrapper build keeps that here.
            "TZ": "UTC",
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "1",
            **({"MINIO_SITE_REGION": self.region} if self.region else {}),
            **self.extra_env,
        }
        address = f"{self.host}:{self.port}"
        console = f"{self.host}:{free_port(self._port_host)}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*(["nsenter", f"--net={self.netns}"] if self.netns else []),
                 str(binary), "server", *(["--quiet"] if self.quiet else []), "--address", address,
                 "--console-address", console,
                 *(["--certs-dir", str(self.certs_dir)] if self.certs_dir else []),
                 str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        url = f"{self.endpoint}/minio/health/ready"
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise MinioError(
                    f"MinIO exited with code {self._process.returncode} before becoming "
                    f"ready; see {self.log_path}"
                )
            if self.netns:
                if http_ok(self.netns, url):
                    self.relay_from_host()
                    return
            else:
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as response:
                        if response.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.1)
        raise MinioError(
            f"MinIO at {self.endpoint} not ready after {self.ready_timeout:.0f}s; "
            f"see {self.log_path} or raise ready_timeout"
        )

    def relay_from_host(self) -> None:
        """For a server inside a namespace (also one another process started): the relay
        the host's clients (`client()`) go through."""
        if self.netns and self._relay is None:
            self._relay = Relay(self.netns, (self.host, self.port)).start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `grace` seconds."""
        process, self._process = self._process, None
        processes.stop(process, grace)
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()

    def client(self, **kwargs: Any) -> S3Client:
        """Return a boto3 S3 client for this server (path-style, region us-east-1)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            # From the host, a server inside a namespace is reached through the relay.
            endpoint_url=(f"http://{LOOPBACK}:{self._relay.port}" if self._relay
                          else self.endpoint),
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region or "us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
            **kwargs,
        )

    def __enter__(self) -> MinioServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_bucket(server: MinioServer, bucket: str) -> None:
    """Create `bucket` on `server`; an existing bucket owned by us is fine."""
    client = server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


def upload_directory(server: MinioServer, bucket: str, prefix: str, directory: Path) -> list[str]:
    """Upload every file under `directory` to `bucket` under `prefix`; return the keys.

    Keys use '/' separators relative to `directory`, e.g. prefix "m/v1" and file
    "sub/a.bin" become "m/v1/sub/a.bin".
    """
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"upload_directory: directory {root} does not exist")
    client = server.client()
    keys: list[str] = []
    base = prefix.strip("/")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        key = f"{base}/{relative}" if base else relative
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys
