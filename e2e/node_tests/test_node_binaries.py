"""The real node's parts, built from their pinned Go modules (`make node-binaries`), are the
versions the wrapper modules pin, with the features the node needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from modeldeploy_e2e.gomod import required_version
from modeldeploy_e2e.paths import BIN_DIR, REPO_ROOT

GO_DIR = REPO_ROOT / "e2e" / "go"


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
    assert f"CoreDNS-{version.removeprefix('v')}" in run(BIN_DIR / "coredns", "-version")
