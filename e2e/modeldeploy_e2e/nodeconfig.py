"""The real node's configuration files, as pure functions of where things live.

Each setting that departs from a default says why: most come from this machine (cgroup
v1, no CAP_SYS_RESOURCE, no route out of the node's namespace).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from modeldeploy_e2e import images
from modeldeploy_e2e.nodenet import CNI_BRIDGE, NodeNetwork

CLUSTER_DOMAIN = "cluster.local"
REGISTRY_ADDRESS = "127.0.0.1:5000"  # the node namespace's loopback, not the host's
PAUSE_IMAGE = images.pause_image().remote_ref(REGISTRY_ADDRESS)
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
DNS_HEALTH_PORT = 8080
DNS_READY_PORT = 8181


@dataclass(frozen=True)
class NodeLayout:
    """Where the node's parts keep their files."""

    state_dir: Path
    bin_dir: Path
    node_name: str
    network: NodeNetwork
    # containerd's content and snapshots (the pulled images), when kept elsewhere.
    containerd_dir: Path | None = None

    @property
    def containerd_root(self) -> Path:
        return self.containerd_dir or self.state_dir / "containerd"

    @property
    def containerd_state(self) -> Path:
        # Under /run: the shim's socket paths must stay short.
        return Path("/run") / f"md-containerd-{self.network.name}"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni"

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "registry-hosts"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state_dir / "pod-logs"

    @property
    def pod_subnet(self) -> str:
        # host-local hands out this node's share (the first /24) of the cluster's pod CIDR.
        return str(next(ipaddress.ip_network(self.network.pod_cidr).subnets(new_prefix=24)))

    @property
    def resolv_conf(self) -> Path:
        return self.state_dir / "resolv.conf"


def containerd_config(layout: NodeLayout) -> str:
    """containerd with its CRI plugins for the kubelet (config version 3)."""
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return "\n".join([
        "version = 3",
        f"root = '{layout.containerd_root}'",
        f"state = '{layout.containerd_state / 'state'}'",
        "",
        "[grpc]",
        f"  address = '{layout.containerd_socket}'",
        "",
        f"[{cri_images}.pinned_images]",
        # No registry here holds registry.k8s.io/pause: the node's own, from its registry.
        f"  sandbox = '{PAUSE_IMAGE}'",
        f"[{cri_images}.registry]",
        f"  config_path = '{layout.certs_dir}'",
        "",
        f"[{cri_runtime}]",
        # The sandbox lacks CAP_SYS_RESOURCE: a negative oom_score_adj (the pause
        # container's -998) is refused, so scores are clamped to containerd's own.
        "  restrict_oom_score_adj = true",
        f"  [{cri_runtime}.cni]",
        f"    bin_dirs = ['{layout.bin_dir / 'cni'}']",
        f"    conf_dir = '{layout.cni_conf_dir}'",
        f"  [{cri_runtime}.containerd.runtimes.runc.options]",
        f"    BinaryName = '{layout.bin_dir / 'runc'}'",
        # cgroup v1 hierarchy, no systemd managing this machine's cgroups.
        "    SystemdCgroup = false",
        "",
    ])


def registry_hosts(address: str = REGISTRY_ADDRESS) -> str:
    """containerd's hosts.toml for the node's registry: plain HTTP on its loopback."""
    return "\n".join([
        f'server = "http://{address}"',
        "",
        f'[host."http://{address}"]',
        '  capabilities = ["pull", "resolve"]',
        "",
    ])


def cni_conflist(layout: NodeLayout) -> str:
    """Pods on the bridge inside the node's namespace; their default route is the bridge's
    address (inside the namespace), so nothing a pod sends can leave it."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "modeldeploy",
        "plugins": [
            {"type": "bridge", "bridge": CNI_BRIDGE, "isGateway": True, "ipMasq": False,
             # A pod reaching its own Service's ClusterIP gets answered through the bridge.
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": layout.pod_subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_config(layout: NodeLayout, pki_dir: Path) -> str:
    """KubeletConfiguration (v1beta1) for one node inside the namespace."""
    node_ip = layout.network.node_ip
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki_dir / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki_dir / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        # This machine mounts the cgroup v1 hierarchy and no systemd manages it.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        # CoreDNS listens on the node's address inside the namespace.
        "clusterDNS": [node_ip],
        "resolvConf": str(layout.resolv_conf),
        "podCIDR": layout.pod_subnet,
        "podLogsDir": str(layout.pod_logs),
        "serializeImagePulls": False,
        # The runtime image is gigabytes and pulled once: never collect it for disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "registerNode": True,
        # Pods report Ready as soon as the kubelet sees it (the default waits for a
        # status sync, adding up to a second to every rollout step).
        "syncFrequency": "10s",
        "fileCheckFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(layout: NodeLayout, kubeconfig: Path) -> str:
    """KubeProxyConfiguration: iptables rules inside the node's namespace."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": layout.network.pod_cidr,
        "hostnameOverride": layout.node_name,
        "bindAddress": layout.network.node_ip,
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        # nf_conntrack_max is a host-wide sysctl: leave it alone.
        "conntrack": {"maxPerCore": 0},
        # Traffic to a ClusterIP is masqueraded, so a reply from a pod on the same bridge
        # returns through the bridge's address whether or not br_netfilter sees it.
        "iptables": {"masqueradeAll": True},
    }
    return yaml.safe_dump(config, sort_keys=False)


def corefile(layout: NodeLayout, kubeconfig: Path) -> str:
    """CoreDNS serving the cluster's names only: no forwarder, nothing leaves."""
    return "\n".join([
        ".:53 {",
        f"    bind {layout.network.node_ip}",
        "    errors",
        f"    health 127.0.0.1:{DNS_HEALTH_PORT}",
        f"    ready 127.0.0.1:{DNS_READY_PORT}",
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{",
        f"        kubeconfig {kubeconfig} local",
        "        pods insecure",
        "        fallthrough in-addr.arpa ip6.arpa",
        "    }",
        "    cache 30",
        "}",
        "",
    ])


def resolv_conf(layout: NodeLayout) -> str:
    """The resolver pods with dnsPolicy Default get: the cluster's DNS, nothing outside."""
    return f"nameserver {layout.network.node_ip}\n"
