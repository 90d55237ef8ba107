"""The pure parts of the image tooling: names, registries, and the runc spec a kubelet-like
runner derives from an image config (no buildah, runc or registry needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modeldeploy_e2e import container, images
from modeldeploy_e2e.registry import registry_config


def test_project_images_are_the_operator_and_the_cuda_runtime_by_default() -> None:
    operator, runtime = images.project_images(version="1.2.3")
    assert operator.local_ref == "localhost/modeldeploy/operator:1.2.3"
    assert runtime.local_ref == "localhost/modeldeploy/runtime:1.2.3-cuda"
    assert dict(runtime.build_args) == {"VARIANT": "cuda"}
    assert runtime.remote_ref("127.0.0.1:5000/") == "127.0.0.1:5000/modeldeploy/runtime:1.2.3-cuda"


def test_cpu_runtime_needs_a_wheel_index_and_drops_the_cuda_suffix() -> None:
    with pytest.raises(images.ImageError, match="--torch-index-url"):
        images.project_images("cpu", version="1.2.3")
    runtime = images.project_images("cpu", "http://127.0.0.1:9/simple", version="1.2.3")[1]
    assert runtime.tag == "1.2.3"
    assert dict(runtime.build_args)["TORCH_INDEX_URL"] == "http://127.0.0.1:9/simple"


def test_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(images.ImageError, match="cpu or cuda, got 'rocm'"):
        images.project_images("rocm")


@pytest.mark.parametrize(("registry", "plain"), [
    ("127.0.0.1:5000", True), ("127.3.4.5:80/team", True), ("localhost:5000", True),
    ("registry.example.com:5000", False), ("10.0.0.1:5000", False), ("[::1]:5000", False),
])
def test_only_loopback_registries_are_spoken_to_without_tls(registry: str, plain: bool) -> None:
    assert images.plain_http(registry) is plain


def test_image_tags_follow_the_project_version() -> None:
    assert images.project_images()[0].tag == images.project_version()


def test_registry_config_binds_the_given_address_and_root(tmp_path: Path) -> None:
    config = json.loads(registry_config(tmp_path, "127.0.0.1:5123"))
    assert config["http"]["addr"] == "127.0.0.1:5123"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path)


IMAGE_CONFIG = {
    "User": "65532:65532",
    "Entrypoint": ["modeldeploy-runtime"],
    "Cmd": ["serve", "--config", "/etc/modeldeploy/runtime.json"],
    "Env": ["PATH=/opt/app/bin:/usr/bin", "HOME=/tmp"],
}


def test_container_without_args_runs_entrypoint_with_cmd() -> None:
    process = container.image_process(IMAGE_CONFIG, None, {"MODELDEPLOY_PORT": "8080"})
    assert process.args == ["modeldeploy-runtime", "serve", "--config",
                            "/etc/modeldeploy/runtime.json"]
    assert (process.uid, process.gid) == (65532, 65532)
    assert "MODELDEPLOY_PORT=8080" in process.env and "HOME=/tmp" in process.env


def test_container_args_replace_cmd_and_env_overrides_the_image() -> None:
    process = container.image_process(IMAGE_CONFIG, ["fetch"], {"HOME": "/home/x"})
    assert process.args == ["modeldeploy-runtime", "fetch"]
    assert "HOME=/home/x" in process.env and "HOME=/tmp" not in process.env


@pytest.mark.parametrize(("user", "expected"), [("", (0, 0)), ("1000", (1000, 1000)),
                                                ("1000:2000", (1000, 2000))])
def test_numeric_users_parse(user: str, expected: tuple[int, int]) -> None:
    assert container.parse_user(user) == expected


def test_named_user_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="USER 65532:65532"):
        container.parse_user("nobody")


def test_spec_is_read_only_without_capabilities_and_shares_the_host_network() -> None:
    process = container.image_process(IMAGE_CONFIG)
    spec = container.oci_spec(
        Path("/rootfs"), process, tmpfs=["/tmp"],
        binds=[container.Bind(Path("/h/cache"), "/var/cache/modeldeploy", read_only=False),
               container.Bind(Path("/h/config"), "/etc/modeldeploy")])
    assert spec["root"] == {"path": "/rootfs", "readonly": True}
    assert spec["process"]["user"] == {"uid": 65532, "gid": 65532}
    assert spec["process"]["noNewPrivileges"] is True
    assert all(caps == [] for caps in spec["process"]["capabilities"].values())
    kinds = {ns["type"] for ns in spec["linux"]["namespaces"]}
    assert "network" not in kinds and {"pid", "mount"} <= kinds
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "rw" in mounts["/var/cache/modeldeploy"]["options"]
    assert "ro" in mounts["/etc/modeldeploy"]["options"]
    assert mounts["/tmp"]["type"] == "tmpfs"
