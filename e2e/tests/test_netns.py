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


def _nat(network: nodenet.NodeNetwork, *rule: str) -> None:
    subprocess.run(["nsenter", f"--net={network.path}", "iptables", "-t", "nat", *rule],
                   check=True, capture_output=True)


def test_a_probe_that_beat_the_services_rule_spoils_only_its_own_port_which_no_connect_gets(
        network: nodenet.NodeNetwork, server: int) -> None:
    hosts = ipaddress.ip_network(network.service_cidr).hosts()
    other, cluster_ip = str(next(hosts)), str(next(hosts))
    # Some Service's rule already exists, as on any node: connection tracking runs.
    _nat(network, "-A", "OUTPUT", "-d", other, "-p", "tcp", "-j", "DNAT",
         "--to-destination", f"{network.node_ip}:{server}")
    probe_port = next(netns.probe_ports(network.path))
    low = int(subprocess.run(
        ["nsenter", f"--net={network.path}", "cat", "/proc/sys/net/ipv4/ip_local_port_range"],
        capture_output=True, text=True, check=True).stdout.split()[0])
    assert probe_port < low

    def get(source_port: int | None) -> tuple[int, int]:
        conn = netns.HTTPConnection(network.path, cluster_ip, 80, 10, source_port)
        try:
            conn.connect()
            assert conn.sock is not None
            port = conn.sock.getsockname()[1]
            conn.request("GET", "/hello")
            return conn.getresponse().status, port
        finally:
            conn.close()

    # The probe beats kube-proxy: no rule for the ClusterIP yet.
    with pytest.raises(OSError) as raised:
        get(probe_port)
    assert raised.value.errno == errno.EHOSTUNREACH
    _nat(network, "-A", "OUTPUT", "-d", cluster_ip, "-p", "tcp", "--dport", "80", "-j", "DNAT",
         "--to-destination", f"{network.node_ip}:{server}")
    # The rule is there now, yet a connect from the probe's port inherits the probe's
    # tracking entry, made without NAT: its SYN still goes to the ClusterIP itself.
    with pytest.raises(OSError) as again:
        get(probe_port)
    assert again.value.errno == errno.EHOSTUNREACH
    # Connects from ports the kernel picks are rewritten, and never get the probe's port.
    answers = [get(None) for _ in range(20)]
    assert {status for status, _ in answers} == {200}
    assert all(port >= low for _, port in answers), answers
