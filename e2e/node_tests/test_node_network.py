"""The real node's network namespace: a pod attached by the CNI bridge plugin is reachable
from the node, and no route in the node's or the pod's namespace leads out of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_e2e import nodenet
from modeldeploy_e2e.paths import BIN_DIR

CNI_DIR = BIN_DIR / "cni"


@pytest.fixture
def network() -> Iterator[nodenet.NodeNetwork]:
    with nodenet.temporary() as network:
        yield network
    assert not nodenet.exists(network)


@pytest.fixture
def pod(network: nodenet.NodeNetwork, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A pod's namespace on the node's cni0 bridge: (namespace name, pod IP)."""
    name = f"{network.name}-pod"
    subprocess.run(["ip", "netns", "add", name], check=True)
    config = json.dumps({
        "cniVersion": "1.0.0", "name": "md-pods", "type": "bridge",
        "bridge": nodenet.CNI_BRIDGE, "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                 "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]},
    })
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": name, "CNI_NETNS": f"/run/netns/{name}",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(CNI_DIR), "PATH": os.environ["PATH"]}
    try:
        added = subprocess.run(["nsenter", f"--net={network.path}", str(CNI_DIR / "bridge")],
                               input=config, env=env, capture_output=True, text=True,
                               check=False)
        assert added.returncode == 0, added.stdout + added.stderr
        address = json.loads(added.stdout)["ips"][0]["address"].split("/")[0]
        yield name, address
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_new_node_namespace_routes_only_to_loopback_and_its_own_prefixes(
        network: nodenet.NodeNetwork) -> None:
    routes = nodenet.routes(network.name)
    assert any(r.get("dev") == nodenet.NODE_BRIDGE for r in routes)
    assert nodenet.route_violations(routes, network) == []


def test_pod_on_the_cni_bridge_is_reached_from_the_node_and_nothing_routes_out(
        network: nodenet.NodeNetwork, pod: tuple[str, str]) -> None:
    pod_ns, pod_ip = pod
    assert pod_ip.startswith("10.244.0.")
    server = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{pod_ns}", sys.executable, "-m", "http.server",
         "--bind", pod_ip, "8080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://{pod_ip}:8080/"
        fetch = ("import urllib.request, time\n"
                 "for _ in range(100):\n"
                 "    try:\n"
                 f"        print(urllib.request.urlopen({url!r}, timeout=2).status)\n"
                 "        break\n"
                 "    except OSError:\n"
                 "        time.sleep(0.1)\n")
        answer = subprocess.run(["nsenter", f"--net={network.path}", sys.executable, "-c", fetch],
                                capture_output=True, text=True, timeout=60, check=False)
        assert answer.stdout.strip() == "200", answer.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    node_routes = nodenet.routes(network.name)
    assert any(r.get("dev") == nodenet.CNI_BRIDGE for r in node_routes)
    assert nodenet.route_violations(node_routes, network) == []
    pod_routes = nodenet.routes(pod_ns)
    assert any(r.get("dst") == "default" and r.get("gateway") == "10.244.0.1"
               for r in pod_routes), pod_routes
    assert nodenet.route_violations(pod_routes, network) == []
