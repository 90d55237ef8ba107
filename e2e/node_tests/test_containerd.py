"""containerd 2.x and runc, inside the node's network namespace, pull the operator image
from the registry there and run it as its non-root user on a read-only root filesystem."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_e2e import images, nodenet
from modeldeploy_e2e.containerd import Containerd
from modeldeploy_e2e.gomod import required_version
from modeldeploy_e2e.paths import BIN_DIR
from modeldeploy_e2e.registry import Registry

pytestmark = pytest.mark.slow

OPERATOR = images.project_images()[0]


@pytest.fixture
def network() -> Iterator[nodenet.NodeNetwork]:
    with nodenet.temporary() as network:
        yield network


@pytest.fixture
def registry(network: nodenet.NodeNetwork) -> Iterator[Registry]:
    """The registry on the node namespace's loopback, holding the operator image."""
    store = images.Store()
    store.build_base()
    store.build(OPERATOR)
    with Registry(images.DEFAULT_STORE / "registry", netns=network.path) as registry:
        store.push(OPERATOR, registry.address, netns=network.path)
        yield registry


def test_containerd_pulls_the_operator_image_and_runc_runs_it_restricted(
        network: nodenet.NodeNetwork, registry: Registry, tmp_path: Path) -> None:
    ref = OPERATOR.remote_ref(registry.address)
    with Containerd(network, tmp_path / "containerd") as containerd:
        version = containerd.ctr("version").stdout
        pinned = required_version(Path(__file__).parents[1] / "go/containerd/go.mod",
                                  "github.com/containerd/containerd/v2")
        assert f"Version:  {pinned}" in version.split("Server:")[1], version
        containerd.ctr("images", "pull", "--plain-http", ref)
        ran = containerd.ctr(
            "run", "--rm", "--read-only", "--runc-binary", str(BIN_DIR / "runc"), ref,
            f"probe-{secrets.token_hex(3)}", "sh", "-c",
            "id -u; touch /var/tmp/probe || true; modeldeploy-operator --help", check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines()[0] == "65532"
    assert "Read-only file system" in ran.stderr
    assert "usage: modeldeploy-operator" in ran.stdout
