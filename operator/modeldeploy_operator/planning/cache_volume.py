"""The serving pod's model cache volume, and what a hostPath cache needs before the fetch.

A hostPath directory that does not exist yet is made by the kubelet, owned by root with mode
0755 (`DirectoryOrCreate`): the runtime, which runs as a non-root user, could not write its
model files there. So a hostPath cache gets a first init container that hands the directory
to the runtime's user (only when it is not already theirs). It runs as root with only the
capabilities that takes; a namespace that admits hostPath volumes at all already runs at
the `privileged` Pod Security level (baseline and restricted refuse hostPath), so it asks
for nothing such a namespace does not already allow. emptyDir and PVC caches are given to
the pod's fsGroup by the kubelet and need nothing.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.api import naming
from modeldeploy_operator.api.spec import ModelDeploymentSpec

Manifest = dict[str, Any]

# Non-root user of the runtime image (docker/runtime.Dockerfile).
RUNTIME_UID = 65532
# Group-writable for the runtime's group, readable by the node's other users (the cache
# collector runs as the same user).
HOST_CACHE_MODE = "0775"


def cache_volume(spec: ModelDeploymentSpec) -> Manifest:
    """The pod's `cache` volume: an emptyDir (sized when asked), a hostPath or a PVC."""
    cache = spec.cache
    if cache.volume == "hostPath":
        return {"name": "cache", "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}}
    if cache.volume == "persistentVolumeClaim":
        return {"name": "cache", "persistentVolumeClaim": {"claimName": cache.claim_name}}
    empty_dir: Manifest = {}
    if cache.size:
        empty_dir["sizeLimit"] = cache.size
    return {"name": "cache", "emptyDir": empty_dir}


def cache_owner_containers(spec: ModelDeploymentSpec, image: str) -> list[Manifest]:
    """The init container giving a hostPath cache directory to the runtime's user (none
    for other caches). Idempotent: a directory the runtime already owns is left as is."""
    if spec.cache.volume != "hostPath":
        return []
    owner = f"{RUNTIME_UID}:{RUNTIME_UID}"
    script = (
        f'if [ "$(stat -c %u:%g "$0")" != "{owner}" ]; then '
        f'chmod {HOST_CACHE_MODE} "$0" && chown {owner} "$0"; fi'
    )
    return [{
        "name": naming.CACHE_OWNER_CONTAINER,
        "image": image,
        "command": ["sh", "-c", script, spec.cache.path],
        "volumeMounts": [{"name": "cache", "mountPath": spec.cache.path}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"memory": "64Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            # CHOWN to hand the directory over; FOWNER to chmod one another user made.
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]},
        },
    }]
