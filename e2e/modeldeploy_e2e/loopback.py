"""Small HTTP servers the tests stand up (a fake hub, an S3 proxy, a token issuer, a
credentials agent): always on 127.0.0.1, a free port, a daemon thread, stopped by `stop`."""

from __future__ import annotations

import http.server
import threading

LOOPBACK = "127.0.0.1"


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    """Start `handler` on a free loopback port in a daemon thread; see `server_port`."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: http.server.ThreadingHTTPServer) -> None:
    """Stop serving and release the port."""
    server.shutdown()
    server.server_close()
