"""A cluster on a real node: the control plane, containerd, kubelet, kube-proxy and CoreDNS,
all inside one network namespace the harness creates (`nodenet`), pods on its CNI bridge.

The host reaches only the API server, through a relay on a host loopback port
(`netns.Relay`), so kubectl and helm work from the host with the admin kubeconfig. Images
come from a registry on the namespace's own loopback.

    python -m modeldeploy_e2e.realnode up|down|status
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modeldeploy_e2e import images, netns, nodeconfig, nodenet, paths, pki
from modeldeploy_e2e.cluster import (
    LOOPBACK,
    ClusterError,
    ClusterState,
    ControlPlane,
    cli,
    http_ok,
)
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.registry import registry_config

COMPONENTS = ("etcd", "kube-apiserver", "apirelay", "kube-controller-manager",
              "kube-scheduler", "registry", "containerd", "kubelet", "kube-proxy", "coredns",
              "provisioner")
DEFAULT_STATE_DIR = paths.CACHE_DIR / "realnode"
CRI_NAMESPACE = "k8s.io"
_IN_NAMESPACE_ROOT = "/run/md-containerd-"
# Components that run on the host side (their hint: what their command line holds).
_ON_HOST = {"apirelay": "modeldeploy_e2e.netns", "provisioner": "modeldeploy_e2e.provisioner"}


class RealNodeCluster(ControlPlane):
    """The local cluster (kubeconfig, kubectl, up, down) with its control plane and a real
    node inside one network namespace."""

    components = COMPONENTS
    label = "real node"
    # A first start builds and pushes the pause image.
    start_timeout = 600.0
    # Inside the namespace only: its loopback for the relay, the node address for pods.
    bind_address = "0.0.0.0"

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, *,
                 network: nodenet.NodeNetwork | None = None,
                 image_store: Path = images.DEFAULT_STORE,
                 extended_resources: dict[str, str] | None = None) -> None:
        self.network = network or nodenet.NodeNetwork()
        # Two GPUs the node advertises (the scheduling scenarios place pods by them).
        resources = {"nvidia.com/gpu": "2"} if extended_resources is None else extended_resources
        super().__init__(state_dir, extended_resources=resources, pod_cidr=self.network.pod_cidr)
        self.advertise_address = self.network.node_ip
        self.image_store = Path(image_store)
        # The pulled images outlive the checkout (paths.MACHINE_CACHE): one node at a time
        # runs on a machine (its network namespace has one name).
        self.layout = nodeconfig.NodeLayout(self.state_dir, paths.BIN_DIR,
                                            ClusterState.model_fields["node_name"].default,
                                            self.network,
                                            containerd_dir=paths.MACHINE_CACHE / "containerd")

    # -- how components run ----------------------------------------------------------
    def _prefix(self, name: str) -> list[str]:
        # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup mounts.
        return [] if name in _ON_HOST else ["nsenter", f"--net={self.network.path}"]

    def _hint(self, name: str) -> str:
        return _ON_HOST.get(name) or super()._hint(name)

    def _extra_identities(self) -> dict[str, tuple[str, str]]:
        return {
            # Bound to system:node-proxier by the API server's bootstrap policy.
            "kube-proxy.kubeconfig": ("kube-proxy", pki.subject("system:kube-proxy")),
            "coredns.kubeconfig": ("coredns", pki.subject("modeldeploy:coredns")),
        }

    def _file(self, name: str, text: str) -> Path:
        path = self.state_dir / "config" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def _command(self, name: str, state: ClusterState) -> list[str]:
        d, layout, bin_dir = self.state_dir, self.layout, paths.BIN_DIR
        port = state.ports.apiserver
        if name == "apirelay":
            return [sys.executable, "-m", "modeldeploy_e2e.netns", "relay",
                    "--netns", self.network.path, "--listen", f"{LOOPBACK}:{port}",
                    "--to", f"{LOOPBACK}:{port}"]
        if name == "registry":
            config = self._file("registry.yml", registry_config(
                self.image_store / "registry", nodeconfig.REGISTRY_ADDRESS))
            return [str(bin_dir / "registry"), "serve", str(config)]
        if name == "containerd":
            return [str(bin_dir / "containerd"), "--config",
                    str(self._file("containerd.toml", nodeconfig.containerd_config(layout)))]
        if name == "kubelet":
            config = self._file("kubelet.yaml", nodeconfig.kubelet_config(layout, self.pki_dir))
            return [str(bin_dir / "kubelet"), f"--config={config}",
                    f"--kubeconfig={d / 'node.kubeconfig'}",
                    f"--node-ip={self.network.node_ip}",
                    f"--hostname-override={state.node_name}",
                    f"--root-dir={layout.kubelet_root}", "--v=1"]
        if name == "kube-proxy":
            config = self._file("kube-proxy.yaml", nodeconfig.kube_proxy_config(
                layout, d / "kube-proxy.kubeconfig"))
            # --v=2 logs each rules sync with its time: what a lagging endpoint is judged by.
            return [str(bin_dir / "kube-proxy"), f"--config={config}", "--v=2"]
        if name == "provisioner":
            # PersistentVolumes for claims (no storage driver here): hostPath directories.
            return [sys.executable, "-m", "modeldeploy_e2e.provisioner",
                    "--kubeconfig", str(self.kubeconfig), "--root", str(d / "pv")]
        if name == "coredns":
            return [str(bin_dir / "coredns"), "-conf", str(self._file(
                "Corefile", nodeconfig.corefile(layout, d / "coredns.kubeconfig")))]
        return super()._command(name, state)

    def _prepare(self, name: str, state: ClusterState) -> None:
        layout = self.layout
        if name == "etcd":
            nodenet.up(self.network)
        elif name == "containerd":
            for path in (layout.containerd_root, layout.containerd_state, layout.cni_conf_dir):
                path.mkdir(parents=True, exist_ok=True)
            (layout.cni_conf_dir / "10-modeldeploy.conflist").write_text(
                nodeconfig.cni_conflist(layout), encoding="utf-8")
            hosts = layout.certs_dir / nodeconfig.REGISTRY_ADDRESS / "hosts.toml"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text(nodeconfig.registry_hosts(), encoding="utf-8")
        elif name == "kubelet":
            self._ensure_pause_image()
            for path in (layout.kubelet_root, layout.pod_logs):
                path.mkdir(parents=True, exist_ok=True)
            layout.resolv_conf.write_text(nodeconfig.resolv_conf(layout), encoding="utf-8")

    def _ensure_pause_image(self) -> None:
        """The sandbox image in the node's registry (made from `make pause` once)."""
        pause = images.pause_image()
        status, body = netns.http_get(
            self.network.path,
            f"http://{nodeconfig.REGISTRY_ADDRESS}/v2/modeldeploy/{pause.name}/tags/list")
        if status == 200 and pause.tag in (json.loads(body).get("tags") or []):
            return
        store = images.Store(self.image_store)
        try:
            store.build_pause(paths.binary("pause"))
            store.push(pause, nodeconfig.REGISTRY_ADDRESS, netns=self.network.path)
        except images.ImageError as error:
            raise ClusterError(f"the node's pause image: {error}") from error

    def _after_healthy(self, name: str, state: ClusterState) -> None:
        # The host reaches the API server only once the relay runs.
        if name == "apirelay":
            self._allow_node_events()
            self._allow_cluster_dns()
        elif name == "kubelet":
            self._advertise_extended_resources(state.node_name)

    def _allow_cluster_dns(self) -> None:
        """CoreDNS's identity may read what it serves names for."""
        client = KubeClient.from_kubeconfig(self.kubeconfig)
        name = "modeldeploy:coredns"
        objects = [
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods",
                                                            "namespaces"],
                           "verbs": ["list", "watch"]},
                          {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                           "verbs": ["list", "watch"]}]}),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": name}]}),
        ]
        for path, body in objects:
            try:
                client.create(path, body)
            except KubeError as error:
                if error.status != 409:
                    raise ClusterError(f"RBAC for CoreDNS not created: {error}") from error

    def _advertise_extended_resources(self, node_name: str) -> None:
        """Extended resources (the GPU count scenarios schedule against) in the node's
        capacity: the documented way is a status patch; the kubelet keeps them."""
        if not self.extended_resources:
            return
        patch = json.dumps({"status": {"capacity": self.extended_resources}})
        self.kubectl("patch", "node", node_name, "--subresource=status", "--type=merge",
                     "-p", patch)

    def _health_checks(self, state: ClusterState) -> dict[str, Callable[[], bool]]:
        ports, ns = state.ports, self.network.path
        ca = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the components' self-signed serving certs
        inside = f"http://{LOOPBACK}"
        return {
            "etcd": lambda: netns.http_ok(ns, f"{inside}:{ports.etcd_client}/health"),
            "kube-apiserver": lambda: netns.http_ok(
                ns, f"https://{LOOPBACK}:{ports.apiserver}/readyz", ca),
            "apirelay": lambda: http_ok(f"https://{LOOPBACK}:{ports.apiserver}/readyz", ca),
            "kube-controller-manager": lambda: netns.http_ok(
                ns, f"https://{LOOPBACK}:{ports.controller_manager}/healthz", insecure),
            "kube-scheduler": lambda: netns.http_ok(
                ns, f"https://{LOOPBACK}:{ports.scheduler}/healthz", insecure),
            "registry": lambda: netns.http_ok(ns, f"http://{nodeconfig.REGISTRY_ADDRESS}/v2/"),
            "containerd": lambda: self.ctr("version", check=False).returncode == 0,
            "kubelet": self._workloads_ready(state),
            "kube-proxy": lambda: netns.http_ok(
                ns, f"{inside}:{nodeconfig.PROXY_HEALTHZ_PORT}/healthz"),
            "coredns": lambda: netns.http_ok(ns, f"{inside}:{nodeconfig.DNS_READY_PORT}/ready"),
            # A polling loop with no endpoint: alive is all there is to check.
            "provisioner": lambda: True,
        }

    # -- the node's containers -------------------------------------------------------
    def ctr(self, *args: str, check: bool = True, netns: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`ctr` on the node's containerd, in the kubelet's (CRI's) namespace; with `netns`
        from inside the node's network namespace (`images pull` fetches in ctr itself)."""
        result = subprocess.run(
            [*(self._prefix("ctr") if netns else []), str(paths.BIN_DIR / "ctr"),
             "--address", str(self.layout.containerd_socket), "-n", CRI_NAMESPACE, *args],
            capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result

    def _before_stop(self, name: str, state: ClusterState) -> None:
        if name == "containerd":
            self._kill_pods()

    def _kill_pods(self) -> None:
        """Kill every container the kubelet left (the kubelet is already stopped) and
        remove their pods' network namespaces, which containerd made."""
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        pod_namespaces: set[str] = set()
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            info = self.ctr("containers", "info", container, check=False).stdout
            with contextlib.suppress(ValueError):
                spec = json.loads(info).get("Spec") or {}
                for namespace in spec.get("linux", {}).get("namespaces", []):
                    if namespace.get("type") == "network" and namespace.get("path"):
                        pod_namespaces.add(namespace["path"])
            while (self.ctr("tasks", "delete", container, check=False).returncode != 0
                   and time.monotonic() < deadline
                   and container in self.ctr("tasks", "ls", "-q", check=False).stdout):
                time.sleep(0.2)
            self.ctr("containers", "delete", container, check=False)
        # A sandbox's shim can outlive its deleted containers: end those ours started.
        socket = str(self.layout.containerd_socket)
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if (argv[0].endswith(b"containerd-shim-runc-v2")
                        and socket.encode() in argv):
                    os.kill(int(proc.name), signal.SIGKILL)
        for path in pod_namespaces:
            if path.startswith("/var/run/netns/") or path.startswith("/run/netns/"):
                subprocess.run(["umount", path], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _down(self, grace: float) -> list[str]:
        stopped = super()._down(grace)
        _unmount_under((self.layout.kubelet_root, self.layout.containerd_root,
                        self.layout.containerd_state))
        _remove_kubepods_cgroups()
        nodenet.down(self.network)
        return stopped


def install_project_images(cluster: RealNodeCluster, store: images.Store | None = None
                           ) -> dict[str, str]:
    """Build both project images (cached layers: after a code change only the project's
    own), push them to the node's registry and pull them into its containerd in advance
    (gigabytes: a pod's pull would outlast a rollout's deadline). Returns each image's
    name -> the reference pods use."""
    store = store or images.Store(cluster.image_store)
    store.build_base()
    refs: dict[str, str] = {}
    for image in images.project_images():
        store.build(image)
        store.push(image, nodeconfig.REGISTRY_ADDRESS, netns=cluster.network.path)
        ref = image.remote_ref(nodeconfig.REGISTRY_ADDRESS)
        # Pulled here so the node's tag names what was just built (pods pull IfNotPresent).
        # ctr fetches itself (not containerd): it runs inside the namespace.
        cluster.ctr("images", "pull", "--plain-http", ref, netns=True, timeout=1800)
        refs[image.name] = ref
    for stale in superseded(cluster.ctr("images", "ls").stdout):
        cluster.ctr("images", "rm", stale, check=False)
    return refs


def superseded(listing: str) -> list[str]:
    """The references in `ctr images ls` output whose image no tag names any more: a new
    pull moves the tag, but the kubelet's digest and id references keep the old image (and
    its gigabytes of layers) for good. Containerd collects the content once they go."""
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    tagged = {row[2] for row in rows
              if not row[0].startswith("sha256:") and "@" not in row[0]}
    return [row[0] for row in rows if row[2] not in tagged]


def _unmount_under(roots: tuple[Path, ...]) -> None:
    """Unmount what the kubelet and containerd mounted at or below `roots` (deepest
    first; the kubelet bind-mounts its own root)."""
    tops = {str(root.resolve()) for root in roots}
    prefixes = tuple(top + "/" for top in tops)
    mounts = [line.split()[4] for line in
              Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m in tops or m.startswith(prefixes)), key=len,
                        reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def _remove_kubepods_cgroups() -> None:
    """The kubelet's QoS cgroups (`kubepods`), emptied once its containers are gone."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def main(argv: list[str] | None = None) -> int:
    """CLI: up | down | status."""
    return cli(argv, RealNodeCluster, "python -m modeldeploy_e2e.realnode", DEFAULT_STATE_DIR)


if __name__ == "__main__":
    raise SystemExit(main())
