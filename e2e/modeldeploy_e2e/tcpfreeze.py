"""A loopback TCP relay whose open connections can be frozen: bytes stop flowing both ways
while the sockets stay open, so a client's watch streams go silent without ending (the
missed-event case a resync has to heal). Connections opened after the freeze flow.

TLS passes through untouched: the relay listens on 127.0.0.1 like the server it fronts,
so the server certificate still matches.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from modeldeploy_e2e.loopback import LOOPBACK


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.flowing = threading.Event()
        self.flowing.set()

    def pump(self, src: socket.socket, dst: socket.socket, stop: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                while not self.flowing.wait(0.1):
                    if stop.is_set():
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if self.flowing.is_set():
                self.close()

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


class FreezingRelay:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target_port`; `freeze()` silences what is open."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="relay accept").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=link.pump, args=(src, dst, self._stop), daemon=True, name="relay pump"
                ).start()

    def freeze(self) -> int:
        """Stop every connection open now from passing bytes; how many were frozen."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.flowing.clear()
        return len(links)

    def stop(self) -> None:
        """Close the listener and every connection."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
