"""The routes rule of the real node's namespace, on route lists as `ip -j route` prints them."""

from __future__ import annotations

from modeldeploy_e2e.nodenet import NodeNetwork, route_violations

NETWORK = NodeNetwork()


def test_loopback_node_pod_and_link_local_routes_stay_inside() -> None:
    routes = [
        {"dst": "10.250.0.0/24", "dev": "md-node"},
        {"type": "local", "dst": "10.250.0.1", "dev": "md-node", "table": "local"},
        {"dst": "10.244.0.0/24", "dev": "cni0"},
        {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
        {"dst": "fe80::/64", "dev": "cni0"},
        {"type": "multicast", "dst": "ff00::/8", "dev": "cni0", "table": "local"},
    ]
    assert route_violations(routes, NETWORK) == []


def test_a_default_route_out_of_the_namespace_is_a_violation() -> None:
    problems = route_violations([{"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"}],
                                NETWORK)
    assert problems == ["default route via 192.168.1.1 leaves the node's namespace"]


def test_a_pods_default_route_to_its_node_bridge_is_allowed() -> None:
    assert route_violations([{"dst": "default", "gateway": "10.244.0.1", "dev": "eth0"}],
                            NETWORK) == []


def test_a_route_to_a_prefix_outside_the_node_is_named() -> None:
    problems = route_violations([{"dst": "10.0.0.0/8", "dev": "md-node"}], NETWORK)
    assert len(problems) == 1 and "10.0.0.0/8" in problems[0] and "md-node" in problems[0]


def test_unreachable_routes_send_nothing() -> None:
    assert route_violations([{"type": "unreachable", "dst": "default"}], NETWORK) == []
