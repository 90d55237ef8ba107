"""Reaching into a harness-made network namespace from the host: a socket made inside it,
and a loopback relay to an address that exists only there."""

from __future__ import annotations

import errno
import ipaddress
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_e2e import netevidence, netns, nodenet, processes
from modeldeploy_e2e.harness import wait_for
from modeldeploy_e2e.s3 import free_port


@pytest.fixture
def network() -> Iterator[nodenet.NodeNetwork]:
    with nodenet.temporary() as network:
        yield network


@pytest.fixture
def server(network: nodenet.NodeNetwork, tmp_path: Path) -> Iterator[int]:
    """An HTTP server on the node address, inside the namespace only."""
    port = free_port()
    (tmp_path / "hello").write_text("inside")
    process = subprocess.Popen(
        ["nsenter", f"--net={network.path}", sys.executable, "-m", "http.server",
         "--bind", network.node_ip, "--directory", str(tmp_path), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the server inside the namespace", lambda: netns.http_ok(
            network.path, f"http://{network.node_ip}:{port}/hello"), timeout=20)
        yield port
    finally:
        processes.stop(process, 5)


def test_a_socket_made_inside_the_namespace_reaches_its_address(
        network: nodenet.NodeNetwork, server: int) -> None:
    status, body = netns.http_get(network.path, f"http://{network.node_ip}:{server}/hello")
    assert (status, body) == (200, b"inside")


def test_the_relay_puts_an_inside_address_on_a_host_loopback_port(
        network: nodenet.NodeNetwork, server: int) -> None:
    relay = netns.Relay(network.path, (network.node_ip, server)).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/hello", timeout=5) as r:
            assert r.read() == b"inside"
    finally:
        relay.stop()
    # The host itself gained no address or route towards the namespace.
    host_routes = subprocess.run(["ip", "-j", "route", "show", "table", "all"],
                                 capture_output=True, text=True, check=True).stdout
    assert network.node_cidr.split("/")[0] not in host_routes


def test_the_relay_refuses_to_listen_off_loopback() -> None:
    with pytest.raises(SystemExit):
        netns.main(["relay", "--netns", "/run/netns/none", "--listen", "0.0.0.0:1",
                    "--to", "10.250.0.1:1"])


def test_a_clusterip_nothing_rewrites_ends_in_no_route_and_the_evidence_names_it(
        network: nodenet.NodeNetwork) -> None:
    # Without kube-proxy's DNAT a ClusterIP is only a route to the node's bridge, where
    # nothing answers ARP for it: the connect fails with EHOSTUNREACH after the ARP probes,
    # and the neighbour table keeps a FAILED entry naming the address.
    address = str(next(ipaddress.ip_network(network.service_cidr).hosts()))
    conn = netns.HTTPConnection(network.path, address, 80, 10)
    with pytest.raises(OSError) as raised:
        conn.request("GET", "/")
    conn.close()
    assert raised.value.errno == errno.EHOSTUNREACH, raised.value
    evidence = netevidence.collect(network.path, "md", "web", address)
    unresolved = evidence.splitlines()[0]
    assert address in unresolved and "FAILED" in unresolved, evidence
