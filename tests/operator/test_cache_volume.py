"""The cache volume, and the hostPath cache handed to the runtime's user before the fetch."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import parse_spec
from modeldeploy_operator.planning import builders
from modeldeploy_operator.planning.cache_volume import RUNTIME_UID

from .conftest import raw_spec

OWNER = builders.Owner("minilm", "models", "uid-1")


def pod_spec(**cache: Any) -> dict[str, Any]:
    spec = parse_spec(raw_spec(cache=cache) if cache else raw_spec())
    template = builders.pod_template(OWNER, spec, "abc123", "registry.local/runtime:1")
    pod: dict[str, Any] = template["spec"]
    return pod


def test_a_host_path_cache_is_handed_to_the_runtime_user_before_the_fetch() -> None:
    pod = pod_spec(volume="hostPath", hostPath="/var/cache/modeldeploy")
    owner, fetch = pod["initContainers"]
    assert owner["name"] == naming.CACHE_OWNER_CONTAINER
    assert fetch["name"] == naming.FETCH_CONTAINER
    assert owner["image"] == fetch["image"] == "registry.local/runtime:1"
    assert owner["volumeMounts"] == [{"name": "cache", "mountPath": "/var/cache/modeldeploy"}]
    # Root, but only what a chown and a chmod take, and no way to gain more.
    security = owner["securityContext"]
    assert security["runAsUser"] == 0 and security["runAsNonRoot"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    # The serving containers stay non-root.
    assert pod["securityContext"]["runAsUser"] == RUNTIME_UID
    assert "runAsUser" not in fetch["securityContext"]


@pytest.mark.parametrize("cache", [{}, {"volume": "persistentVolumeClaim", "claimName": "c"}],
                         ids=["emptyDir", "persistentVolumeClaim"])
def test_caches_the_kubelet_gives_to_the_fs_group_get_no_owner_container(
        cache: dict[str, str]) -> None:
    pod = pod_spec(**cache)
    assert [c["name"] for c in pod["initContainers"]] == [naming.FETCH_CONTAINER]
    assert pod["securityContext"]["fsGroup"] == RUNTIME_UID


def test_the_owner_script_hands_a_root_directory_over_once(tmp_path: Path) -> None:
    """The container's command, run by sh as root (the test runs as root, as the
    container does): a directory the kubelet made (root, 0755) becomes the runtime's
    (0775); a second run changes nothing."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o755)
    owner = pod_spec(volume="hostPath", hostPath=str(folder))["initContainers"][0]
    mount_path = owner["volumeMounts"][0]["mountPath"]
    assert owner["command"][-1] == mount_path
    # Where the kubelet mounts the directory in the container: here, the directory itself.
    command = [*owner["command"][:-1], str(folder)]
    subprocess.run(command, check=True)
    info = folder.stat()
    assert (info.st_uid, info.st_gid) == (RUNTIME_UID, RUNTIME_UID)
    assert info.st_mode & 0o777 == 0o775
    folder.chmod(0o700)  # the runtime's own choice: left alone once the directory is theirs
    subprocess.run(command, check=True)
    assert folder.stat().st_mode & 0o777 == 0o700
