"""The slice of the kubelet's HTTPS API that `kubectl logs` needs: /containerLogs.

The API server proxies `kubectl logs` to https://<node InternalIP>:<kubeletEndpoint port>
/containerLogs/<namespace>/<pod>/<container>; this serves the container's output file.
Bound to 127.0.0.1 only; the API server authenticates with its kubelet client certificate.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: (namespace, pod, container) -> the container's log file and whether the pod still runs.
LogFinder = Callable[[str, str, str], tuple[Path, Callable[[], bool]] | None]


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last `lines` lines of `data`, then at most `limit` bytes (the kubelet's order)."""
    if lines is not None:
        kept = data.splitlines(keepends=True)
        data = b"".join(kept[-lines:]) if lines > 0 else b""
    if limit is not None:
        data = data[:limit]
    return data


def make_handler(find: LogFinder) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving logs located by `find`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # the API server's own logs record these requests

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/<ns>/<pod>/<container> is served")
                return
            found = find(parts[1], parts[2], parts[3])
            if found is None:
                self.send_error(404, f"no container {parts[3]} in pod {parts[1]}/{parts[2]}")
                return
            path, alive = found
            query = urllib.parse.parse_qs(url.query)
            lines = int(query["tailLines"][0]) if "tailLines" in query else None
            limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
            follow = query.get("follow", ["false"])[0] == "true"
            data = path.read_bytes() if path.exists() else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not follow:
                body = tail(data, lines, limit)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.end_headers()
            self.wfile.write(tail(data, lines, None))
            offset = len(data)
            try:
                while alive():
                    time.sleep(0.2)
                    with path.open("rb") as stream:
                        stream.seek(offset)
                        chunk = stream.read()
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        offset += len(chunk)
            except (BrokenPipeError, ConnectionResetError, OSError):
                return

    return Handler


def serve(find: LogFinder, port: int, cert: Path, key: Path, ca: Path) -> ThreadingHTTPServer:
    """Start the log server on 127.0.0.1:`port` in a daemon thread; clients need a CA-signed
    certificate (the API server's kubelet client certificate)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(find))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="logserver", daemon=True).start()
    return server
