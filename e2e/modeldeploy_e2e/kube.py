"""A small JSON client for the Kubernetes API, configured from a kubeconfig file.

The harness reads and writes plain dicts (what `kubectl get -o json` shows).
Client-certificate and bearer-token kubeconfigs are supported; one connection per thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

JsonDict = dict[str, Any]


class KubeError(RuntimeError):
    """The API answered with an error status; `status` and `reason` come from its body."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        try:
            parsed = json.loads(body)
            reason, message = parsed.get("reason", ""), parsed.get("message", "")
        except ValueError:
            reason, message = "", body[:300].decode(errors="replace")
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason


class Endpoint(BaseModel):
    """Where and how to reach the API server, resolved from a kubeconfig."""

    server: str
    ca_file: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None


def _materialize(entry: JsonDict, file_key: str, data_key: str, scratch: Path) -> str | None:
    """Return a path for a kubeconfig field given as a file or as base64 data."""
    if entry.get(file_key):
        return str(entry[file_key])
    if entry.get(data_key):
        path = scratch / data_key
        path.write_bytes(base64.b64decode(entry[data_key]))
        return str(path)
    return None


def load_endpoint(kubeconfig: Path, context: str | None = None) -> Endpoint:
    """Resolve the current (or named) context of `kubeconfig` into an Endpoint."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    name = context or config.get("current-context")
    ctx = next((c["context"] for c in config.get("contexts", []) if c["name"] == name), None)
    if ctx is None:
        raise ValueError(
            f"kubeconfig {kubeconfig}: context {name!r} not found; set current-context")
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    users = config.get("users", [])
    user: JsonDict = next((u["user"] for u in users if u["name"] == ctx.get("user")), {})
    scratch = Path(tempfile.mkdtemp(prefix="kubeconfig-"))
    return Endpoint(
        server=cluster["server"],
        ca_file=_materialize(
            cluster, "certificate-authority", "certificate-authority-data", scratch),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        cert_file=_materialize(user, "client-certificate", "client-certificate-data", scratch),
        key_file=_materialize(user, "client-key", "client-key-data", scratch),
        token=user.get("token"),
    )


class KubeClient:
    """JSON over HTTPS to one API server; safe to share between threads."""

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(endpoint.server)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 443
        self._prefix = parsed.path.rstrip("/")
        context = ssl.create_default_context(cafile=endpoint.ca_file)
        if endpoint.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if endpoint.cert_file and endpoint.key_file:
            context.load_cert_chain(endpoint.cert_file, endpoint.key_file)
        self._context = context
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, timeout: float = 30.0) -> KubeClient:
        """Build a client for the current context of `kubeconfig`."""
        return cls(load_endpoint(kubeconfig), timeout)

    def _connection(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: JsonDict | None = None,
                content_type: str = "application/json",
                params: dict[str, str] | None = None) -> JsonDict:
        """Send one request; return the decoded JSON body or raise KubeError."""
        url = self._prefix + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, url, body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                # A kept-alive connection the server closed: reconnect once.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        if response.status >= 400:
            raise KubeError(method, path, response.status, data)
        return json.loads(data) if data else {}

    def get(self, path: str, **params: str) -> JsonDict:
        """GET `path`."""
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: JsonDict) -> JsonDict:
        """POST `body` to the collection at `path`."""
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: JsonDict) -> JsonDict:
        """PATCH with a JSON merge patch (lists are replaced, null deletes a key)."""
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def put(self, path: str, body: JsonDict) -> JsonDict:
        """PUT (replace) the object at `path`."""
        return self.request("PUT", path, body)

    def delete(self, path: str, body: JsonDict | None = None) -> JsonDict:
        """DELETE the object at `path` with optional DeleteOptions."""
        return self.request("DELETE", path, body)

    def watch(
        self, path: str, handle: Callable[[str, JsonDict], None], seconds: int = 1800
    ) -> None:
        """Stream the watch of the collection at `path` into `handle(type, object)` for up
        to `seconds` (blocking; run it in a thread). Its own connection."""
        query = urllib.parse.urlencode({"watch": "1", "timeoutSeconds": str(seconds)})
        headers = {"Accept": "application/json"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=seconds + 30)
        try:
            conn.request("GET", f"{self._prefix}{path}?{query}", headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                raise KubeError("GET", path, response.status, response.read())
            while line := response.readline():
                event = json.loads(line)
                handle(str(event.get("type")), event.get("object") or {})
        finally:
            conn.close()
