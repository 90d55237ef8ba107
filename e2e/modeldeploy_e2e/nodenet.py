"""The real node's network: one network namespace the harness creates, and nothing routed
out of it.

Traffic on these machines may go only to 127.0.0.0/8 or to addresses inside namespaces the
harness creates. So the node, its pods (on the CNI bridge `cni0`), its Services (kube-proxy's
rules) and cluster DNS all live inside one namespace that has no default route and no link
to the host; whoever talks to the cluster runs inside it too (`nsenter --net=PATH`, never
`ip netns exec`, which remounts /sys and hides the cgroup mounts the kubelet needs).

    python -m modeldeploy_e2e.nodenet up|down|routes [--name md-node]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

NODE_BRIDGE = "md-node"
CNI_BRIDGE = "cni0"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# What the kernel adds on every IPv6-enabled link; never routes off the link.
IPV6_LINK_LOCAL = (ipaddress.ip_network("fe80::/64"), ipaddress.ip_network("ff00::/8"),
                   ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class NodeNetwork:
    """The namespace's name and the prefixes that exist only inside it."""

    name: str = "md-node"
    node_cidr: str = "10.250.0.0/24"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def node_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.node_cidr).hosts()))

    def prefixes(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p) for p in (self.node_cidr, self.pod_cidr,
                                                  self.service_cidr)]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _within(dst: Network, net: Network) -> bool:
    if isinstance(dst, ipaddress.IPv4Network) and isinstance(net, ipaddress.IPv4Network):
        return dst.subnet_of(net)
    if isinstance(dst, ipaddress.IPv6Network) and isinstance(net, ipaddress.IPv6Network):
        return dst.subnet_of(net)
    return False


def _dst(route: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    dst = str(route.get("dst", ""))
    if dst in ("default", "0.0.0.0/0", "::/0"):
        return None
    return ipaddress.ip_network(dst, strict=False)


def route_violations(routes: list[dict[str, Any]], network: NodeNetwork) -> list[str]:
    """Every route (all tables, `ip -j route show table all`) that could lead out of the
    namespace: a default route through a gateway outside the node's prefixes, or a
    destination outside loopback and those prefixes. Empty means nothing there can send
    to an outside address."""
    allowed = [LOOPBACK, *network.prefixes()]
    problems = []
    for route in routes:
        dst = _dst(route)
        if route.get("type") in ("unreachable", "prohibit", "blackhole"):
            continue
        if dst is None:
            # A pod's default route goes to its node's bridge, inside the namespace.
            gateway = route.get("gateway")
            if gateway is None or not any(
                    ipaddress.ip_address(gateway) in n for n in network.prefixes()):
                problems.append(f"default route via {gateway or route.get('dev')} leaves "
                                "the node's namespace")
        elif any(_within(dst, n) for n in IPV6_LINK_LOCAL):
            continue
        elif not any(_within(dst, n) for n in allowed):
            problems.append(f"route to {dst} (dev {route.get('dev')}) leaves the node's "
                            f"prefixes {', '.join(str(n) for n in allowed)}")
    return problems


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def exists(network: NodeNetwork) -> bool:
    return network.name in _ip("netns", "list").split()


def up(network: NodeNetwork) -> None:
    """Create the namespace with loopback up and the node address on its own bridge
    (no link to the host; idempotent)."""
    if not exists(network):
        _ip("netns", "add", network.name)
    _ip("-n", network.name, "link", "set", "lo", "up")
    if NODE_BRIDGE not in _ip("-n", network.name, "-o", "link", "show"):
        # A bridge, not a dummy link: the dummy driver is not available on these kernels.
        _ip("-n", network.name, "link", "add", NODE_BRIDGE, "type", "bridge")
        prefix = ipaddress.ip_network(network.node_cidr).prefixlen
        _ip("-n", network.name, "addr", "add", f"{network.node_ip}/{prefix}", "dev",
            NODE_BRIDGE)
    _ip("-n", network.name, "link", "set", NODE_BRIDGE, "up")
    # ClusterIPs are virtual: kube-proxy rewrites them after the routing decision, so the
    # node itself needs a route to the Service range before its own packets reach the
    # rules. It points at the node's bridge, inside the namespace.
    _ip("-n", network.name, "route", "replace", network.service_cidr, "dev", NODE_BRIDGE)


def down(network: NodeNetwork) -> None:
    """Delete the namespace (its bridges and veths go with it); nothing if it is gone."""
    if exists(network):
        _ip("netns", "delete", network.name)


@contextlib.contextmanager
def temporary(prefix: str = "md-t") -> Iterator[NodeNetwork]:
    """A freshly named node namespace for one test, deleted afterwards."""
    network = NodeNetwork(name=f"{prefix}{secrets.token_hex(3)}")
    up(network)
    try:
        yield network
    finally:
        down(network)


def routes(namespace: str) -> list[dict[str, Any]]:
    """All IPv4 and IPv6 routes of every table inside the named network namespace."""
    found: list[dict[str, Any]] = []
    for family in ("-4", "-6"):
        text = _ip("-n", namespace, "-j", family, "route", "show", "table", "all")
        found += json.loads(text or "[]")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.nodenet")
    parser.add_argument("command", choices=("up", "down", "routes"))
    parser.add_argument("--name", default=NodeNetwork().name)
    args = parser.parse_args(argv)
    network = NodeNetwork(name=args.name)
    if args.command == "up":
        up(network)
        print(f"{network.name}: node {network.node_ip}, pods {network.pod_cidr}, "
              f"services {network.service_cidr}; enter with nsenter --net={network.path}")
    elif args.command == "down":
        down(network)
    else:
        problems = route_violations(routes(network.name), network)
        for problem in problems:
            print(problem, file=sys.stderr)
        print("routes stay inside the node's network" if not problems else "")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
