"""The real node's configuration files: the settings this machine needs and the node's
network rule (every address a part listens on or routes to stays inside the namespace)."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import yaml
from modeldeploy_e2e import images, nodeconfig
from modeldeploy_e2e.nodenet import NodeNetwork

NETWORK = NodeNetwork()
LAYOUT = nodeconfig.NodeLayout(Path("/state"), Path("/bin-dir"), "node-a", NETWORK)


def inside(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or any(ip in prefix for prefix in NETWORK.prefixes())


def test_containerd_uses_the_nodes_pause_image_runc_and_cni_without_systemd() -> None:
    config = tomllib.loads(nodeconfig.containerd_config(LAYOUT))
    cri = config["plugins"]
    assert cri["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == \
        images.pause_image().remote_ref(nodeconfig.REGISTRY_ADDRESS)
    runtime = cri["io.containerd.cri.v1.runtime"]
    # The sandbox has no CAP_SYS_RESOURCE: the pause container's -998 would be refused.
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["containerd"]["runtimes"]["runc"]["options"] == {
        "BinaryName": "/bin-dir/runc", "SystemdCgroup": False}
    assert runtime["cni"]["bin_dirs"] == ["/bin-dir/cni"]
    assert config["grpc"]["address"] == str(LAYOUT.containerd_socket)


def test_the_registry_is_spoken_to_over_plain_http_on_the_namespaces_loopback() -> None:
    hosts = tomllib.loads(nodeconfig.registry_hosts())
    assert hosts["server"] == f"http://{nodeconfig.REGISTRY_ADDRESS}"
    assert inside(nodeconfig.REGISTRY_ADDRESS.split(":")[0])


def test_pods_get_addresses_and_a_default_route_inside_the_pod_cidr() -> None:
    bridge = json.loads(nodeconfig.cni_conflist(LAYOUT))["plugins"][0]
    [[subnet]] = bridge["ipam"]["ranges"]
    assert ipaddress.ip_network(subnet["subnet"]).subnet_of(
        ipaddress.ip_network(NETWORK.pod_cidr))
    # isGateway: the pods' default route is the bridge's first address, inside the subnet.
    assert bridge["isGateway"] is True and bridge["ipMasq"] is False


def test_kubelet_fits_cgroup_v1_and_serves_on_the_node_address_only() -> None:
    config = yaml.safe_load(nodeconfig.kubelet_config(LAYOUT, Path("/pki")))
    assert (config["cgroupDriver"], config["failCgroupV1"]) == ("cgroupfs", False)
    assert config["address"] == NETWORK.node_ip and config["readOnlyPort"] == 0
    assert config["clusterDNS"] == [NETWORK.node_ip]
    assert all(inside(a) for a in (config["address"], config["healthzBindAddress"],
                                   *config["clusterDNS"]))
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["imageGCHighThresholdPercent"] == 100


def test_kube_proxy_and_coredns_listen_inside_and_dns_forwards_nowhere() -> None:
    proxy = yaml.safe_load(nodeconfig.kube_proxy_config(LAYOUT, Path("/kc")))
    assert proxy["mode"] == "iptables" and proxy["clusterCIDR"] == NETWORK.pod_cidr
    assert proxy["conntrack"]["maxPerCore"] == 0  # a host-wide sysctl: left alone
    for address in (proxy["bindAddress"], proxy["healthzBindAddress"].split(":")[0],
                    proxy["metricsBindAddress"].split(":")[0]):
        assert inside(address)
    corefile = nodeconfig.corefile(LAYOUT, Path("/kc"))
    assert f"bind {NETWORK.node_ip}" in corefile
    # No forward plugin: a name outside the cluster is never asked of anyone outside.
    assert "forward" not in corefile and "kubernetes cluster.local" in corefile
    assert nodeconfig.resolv_conf(LAYOUT) == f"nameserver {NETWORK.node_ip}\n"
