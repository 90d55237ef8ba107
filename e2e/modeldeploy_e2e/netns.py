"""Reaching into the node's network namespace from the host, towards addresses inside it.

The real node's API server, pods and ClusterIPs exist only inside the namespace the harness
made (`nodenet`). A socket belongs to the namespace of the thread that created it, so a
short-lived thread enters the namespace (setns), creates and connects the socket, and hands
it back: the host gains no address and no route. `Relay` puts one such address on a host
loopback port (the API server for kubectl, helm and the operator; a ClusterIP for traffic).

    python -m modeldeploy_e2e.netns relay --netns /run/netns/md-node \
        --listen 127.0.0.1:6443 --to 10.250.0.1:6443
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import itertools
import os
import signal
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from modeldeploy_e2e.loopback import LOOPBACK

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
# Probes taken by this process (`probe_ports`).
_PROBES = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)


def _enter(netns: str) -> None:
    """Move the calling thread (only it) into the network namespace at path `netns`."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({netns}): {os.strerror(error)}")
    finally:
        os.close(fd)


def _run_inside(netns: str | None, work: Callable[[], T]) -> T:
    """`work()` run from a thread inside `netns` (netns None: this process's own namespace,
    so callers need no second code path). A socket it makes belongs there, and a
    /proc/sys/net file it opens is that namespace's."""
    if netns is None:
        return work()
    result: list[T | BaseException] = []

    def inside() -> None:
        # This thread ends right after: the namespace switch dies with it.
        try:
            _enter(netns)
            result.append(work())
        except BaseException as error:  # handed to the caller's thread
            result.append(error)

    thread = threading.Thread(target=inside, name=f"work in {netns}", daemon=True)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def connect(netns: str | None, address: tuple[str, int], timeout: float = 10.0,
            source_port: int | None = None) -> socket.socket:
    """A TCP socket connected to `address` as seen from inside `netns` (from `source_port`
    when given: see `probe_ports`)."""
    source = ("0.0.0.0", source_port) if source_port else None
    return _run_inside(netns, lambda: socket.create_connection(address, timeout=timeout,
                                                               source_address=source))


def probe_ports(netns: str | None, span: int = 2000) -> Iterator[int]:
    """Source ports for probing a Service that kube-proxy may not have programmed yet: the
    `span` ports just below the namespace's ephemeral range, so the kernel never gives one
    of them to a later connect; each probe of this process takes the next one (round and
    round), so a probe does not meet an earlier probe's entry either.

    Why: a SYN to a ClusterIP with no rule yet leaves a connection-tracking entry without NAT
    (SYN_SENT, kept 120 s). A later connect that the kernel gives the same source port
    matches that entry, so its SYN goes out to the ClusterIP itself, unrewritten, and ends
    in "No route to host" after ARP gives up, though kube-proxy's rules are in place. Seen
    here as 2 failed requests in ~21,800 of the traffic after a new Service's first answer."""
    low = _run_inside(netns, lambda: int(
        Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]))
    span = min(span, low - 1025)
    while True:
        yield low - 1 - next(_PROBES) % span


def listen(netns: str | None, address: tuple[str, int], backlog: int = 64) -> socket.socket:
    """A TCP socket listening on `address` inside `netns` (port 0: any free one), for a
    server the cluster's own components or pods must reach."""
    return _run_inside(netns, lambda: socket.create_server(address, backlog=backlog))


class HTTPConnection(http.client.HTTPConnection):
    """http.client's connection, its socket connected from inside `netns`."""

    def __init__(self, netns: str | None, host: str, port: int, timeout: float,
                 source_port: int | None = None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.netns = netns
        self.source_port = source_port

    def connect(self) -> None:
        self.sock = connect(self.netns, (self.host, self.port), self.timeout or 10.0,
                            self.source_port)


class HTTPSConnection(HTTPConnection):
    def __init__(self, netns: str | None, host: str, port: int, timeout: float,
                 context: ssl.SSLContext, source_port: int | None = None) -> None:
        super().__init__(netns, host, port, timeout, source_port)
        self.context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)


def http_get(netns: str | None, url: str, context: ssl.SSLContext | None = None,
             timeout: float = 5.0, source_port: int | None = None) -> tuple[int, bytes]:
    """GET `url` from inside `netns`: (status, body)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or LOOPBACK, parts.port
    connection: HTTPConnection
    if parts.scheme == "https":
        connection = HTTPSConnection(netns, host, port or 443, timeout,
                                     context or ssl.create_default_context(), source_port)
    else:
        connection = HTTPConnection(netns, host, port or 80, timeout, source_port)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_ok(netns: str | None, url: str, context: ssl.SSLContext | None = None,
            source_port: int | None = None) -> bool:
    """True when GET `url` from inside `netns` answers 200."""
    try:
        return http_get(netns, url, context, source_port=source_port)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


class Relay:
    """Relays 127.0.0.1:`port` on the host to `target` inside `netns`, byte for byte (TLS
    passes through: clients verify the certificate of what is inside)."""

    def __init__(self, netns: str, target: tuple[str, int], port: int = 0) -> None:
        self.netns = netns
        self.target = target
        self._listener = socket.create_server((LOOPBACK, port), reuse_port=False)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> Relay:
        threading.Thread(target=self.serve, daemon=True, name="relay accept").start()
        return self

    def serve(self) -> None:
        """Accept until stopped (a `relay` process runs this on its main thread)."""
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._link, args=(client,), daemon=True,
                             name="relay link").start()

    def _link(self, client: socket.socket) -> None:
        try:
            upstream = connect(self.netns, self.target)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True,
                         name="relay pump").start()
        self._pump(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()
        with self._lock:
            self._open.discard(src)

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self._stopped.set()
        self._listener.close()
        with self._lock:
            open_now, self._open = self._open, set()
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.netns")
    parser.add_argument("command", choices=("relay",))
    parser.add_argument("--netns", required=True, help="a network namespace's path")
    parser.add_argument("--listen", required=True, type=_address,
                        help="host loopback address:port")
    parser.add_argument("--to", required=True, type=_address,
                        help="address:port inside the namespace")
    args = parser.parse_args(argv)
    if args.listen[0] != LOOPBACK:
        parser.error(f"--listen must be on {LOOPBACK}: the host side stays on loopback")
    relay = Relay(args.netns, args.to, args.listen[1])
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    relay.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
