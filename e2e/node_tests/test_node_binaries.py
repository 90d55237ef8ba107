"""The real node's parts, built from their pinned Go modules (`make node-binaries`), are the
versions the wrapper modules pin, with the features the node needs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from modeldeploy_e2e import netns, nodeconfig
from modeldeploy_e2e.faults import closed_port
from modeldeploy_e2e.gomod import required_version
from modeldeploy_e2e.nodenet import NodeNetwork
from modeldeploy_e2e.paths import BIN_DIR, REPO_ROOT
from modeldeploy_e2e.s3 import free_port

GO_DIR = REPO_ROOT / "e2e" / "go"
LAYOUT = nodeconfig.NodeLayout(Path("/state"), BIN_DIR, "node-a", NodeNetwork())


def pinned(wrapper: str, module: str) -> str:
    """The version `e2e/go/<wrapper>/go.mod` requires of `module`."""
    return required_version(GO_DIR / wrapper / "go.mod", module)


def run(binary: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60,
                            check=False, env=env)
    return result.stdout + result.stderr


def test_kubelet_and_kube_proxy_are_the_control_planes_release() -> None:
    release = pinned("kubernetes", "k8s.io/kubernetes")
    assert pinned("kubelet", "k8s.io/kubernetes") == release
    for name in ("kubelet", "kube-proxy", "kube-apiserver"):
        assert run(BIN_DIR / name, "--version").strip() == f"Kubernetes {release}"


def test_containerd_is_2x_as_pinned() -> None:
    version = pinned("containerd", "github.com/containerd/containerd/v2")
    assert version.startswith("v2.")
    for name in ("containerd", "ctr"):
        assert version in run(BIN_DIR / name, "--version")


def test_runc_is_pinned_and_built_with_seccomp() -> None:
    version = pinned("runc", "github.com/opencontainers/runc")
    assert f"runc version {version.removeprefix('v')}" in run(BIN_DIR / "runc", "--version")
    features = json.loads(run(BIN_DIR / "runc", "features"))
    # Without libseccomp the default seccomp profile containerd sets fails every container.
    assert features["linux"]["seccomp"]["enabled"] is True


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "loopback", "portmap"])
def test_cni_plugins_are_pinned(plugin: str) -> None:
    version = pinned("cni", "github.com/containernetworking/plugins")
    assert version in run(BIN_DIR / "cni" / plugin, env={})


def test_coredns_is_pinned() -> None:
    version = pinned("coredns", "github.com/coredns/coredns")
    name, release = run(BIN_DIR / "coredns", "-version").splitlines()[:2]
    assert name == f"CoreDNS-{version.removeprefix('v')}"
    assert release.endswith(f", {version}")  # the build's GitCommit names the release


def directives(corefile: str) -> set[str]:
    """The plugins a Corefile's server blocks name (the first word of each top-level line)."""
    names: set[str] = set()
    depth = 0
    for line in corefile.splitlines():
        words = line.split()
        if depth == 1 and words and words[0] != "}":
            names.add(words[0])
        depth += line.count("{") - line.count("}")
    return names


# Registered by packages the Corefile's plugins import (kubernetes and cache): compiled in
# whatever main.go lists, so not a sign of a plugin left in by mistake.
COREDNS_PLUGINS_PULLED_IN = {"metadata", "prometheus", "transfer"}


def test_coredns_has_only_the_plugins_the_nodes_corefile_uses() -> None:
    used = directives(nodeconfig.corefile(LAYOUT, Path("/kc")))
    assert used >= {"bind", "kubernetes", "ready"}  # the parser found the block
    # The stock binary's other 51 (route53, azure, clouddns, etcd, dnstap, forward, ...) are out.
    assert set(run(BIN_DIR / "coredns", "-plugins").split()) == used | COREDNS_PLUGINS_PULLED_IN


def on_loopback(corefile: str, dns: int, health: int, ready: int) -> str:
    """The node's Corefile with its listeners moved to free loopback ports, nothing else."""
    moves = {".:53 {": f".:{dns} {{", f"bind {LAYOUT.network.node_ip}": "bind 127.0.0.1",
             f"127.0.0.1:{nodeconfig.DNS_HEALTH_PORT}": f"127.0.0.1:{health}",
             f"127.0.0.1:{nodeconfig.DNS_READY_PORT}": f"127.0.0.1:{ready}"}
    for old, new in moves.items():
        assert corefile.count(old) == 1, f"{old!r} not once in the node's Corefile"
        corefile = corefile.replace(old, new)
    return corefile


class CoreDNS(NamedTuple):
    process: subprocess.Popen[bytes]
    log: Path
    health_url: str
    ready_url: str


@pytest.fixture
def coredns_without_api(tmp_path: Path) -> Iterator[CoreDNS]:
    """CoreDNS on the node's Corefile (on loopback) whose API server is not there; stopped
    by pid."""
    kubeconfig = tmp_path / "coredns.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "none", "cluster": {
            "server": f"https://127.0.0.1:{closed_port()}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "coredns", "user": {"token": "unused"}}],
        "contexts": [{"name": "local", "context": {"cluster": "none", "user": "coredns"}}],
    }))
    health, ready = free_port(), free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(on_loopback(nodeconfig.corefile(LAYOUT, kubeconfig), free_port(), health,
                                ready))
    log = tmp_path / "coredns.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN_DIR / "coredns"), "-conf", str(conf)],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        yield CoreDNS(process, log, f"http://127.0.0.1:{health}/health",
                      f"http://127.0.0.1:{ready}/ready")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_coredns_starts_on_the_nodes_corefile_and_is_not_ready_before_the_api_syncs(
        coredns_without_api: CoreDNS) -> None:
    dns = coredns_without_api
    # /health answers once the plugins are set up, before the kubernetes plugin's API wait.
    deadline = time.monotonic() + 30
    while not netns.http_ok(None, dns.health_url):
        assert dns.process.poll() is None, f"CoreDNS exited: {dns.log.read_text()}"
        assert time.monotonic() < deadline, f"no /health 200 in 30 s: {dns.log.read_text()}"
        time.sleep(0.5)
    # /ready is what the node waits on: it names the plugin still waiting for the API.
    assert netns.http_get(None, dns.ready_url) == (503, b"kubernetes")
