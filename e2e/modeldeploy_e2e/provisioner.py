"""A tiny volume provisioner: every pending PersistentVolumeClaim gets a hostPath
PersistentVolume pre-bound to it, so pods with PVC volumes schedule on the local node.

Nodes may not create PersistentVolumes, so this runs with its own (admin) credentials.
Volumes it made are labelled; once their claim is gone they and their directory go too.
Each directory is made world-writable first, as local-path provisioners do: the pods'
containers run as any user (the project's images as 65532).

    python -m modeldeploy_e2e.provisioner --kubeconfig K --root DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modeldeploy_e2e.kube import KubeClient, KubeError

JsonDict = dict[str, Any]
log = logging.getLogger(__name__)
LABEL = "modeldeploy.dev/local-provisioner"


def volume_for(claim: JsonDict, root: Path) -> JsonDict:
    """The PersistentVolume that satisfies `claim` from a directory under `root`."""
    meta, spec = claim["metadata"], claim.get("spec", {})
    size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
    path = root / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "labels": {LABEL: "true"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            # Delete would need an in-tree deleter for hostPath; this loop cleans up instead.
            "persistentVolumeReclaimPolicy": "Retain",
        },
    }


def needs_volume(claim: JsonDict) -> bool:
    """Whether `claim` waits for a volume nobody else will provide."""
    return (claim.get("status", {}).get("phase") == "Pending"
            and not claim.get("spec", {}).get("volumeName")
            and claim.get("spec", {}).get("volumeMode", "Filesystem") == "Filesystem"
            and not claim.get("spec", {}).get("selector")
            and not claim["metadata"].get("deletionTimestamp"))


class Provisioner:
    """Poll claims and volumes; create and reclaim hostPath volumes."""

    def __init__(self, client: KubeClient, root: Path, stop: threading.Event) -> None:
        self.client = client
        self.root = root
        self.stop = stop

    def sync_once(self) -> None:
        """Provision for pending claims; remove our volumes whose claim is gone."""
        claims = self.client.get("/api/v1/persistentvolumeclaims")["items"]
        live = {c["metadata"]["uid"] for c in claims}
        for claim in claims:
            if needs_volume(claim):
                volume = volume_for(claim, self.root)
                path = Path(volume["spec"]["hostPath"]["path"])
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o777)
                try:
                    self.client.create("/api/v1/persistentvolumes", volume)
                except KubeError as error:
                    if error.status != 409:
                        raise
        volumes = self.client.get("/api/v1/persistentvolumes", labelSelector=f"{LABEL}=true")
        for volume in volumes["items"]:
            ref = volume["spec"].get("claimRef") or {}
            if ref.get("uid") not in live:
                self.client.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
                shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)

    def run(self) -> None:
        """Sync every second until stopped."""
        while not self.stop.wait(1.0):
            try:
                self.sync_once()
            except (KubeError, OSError) as error:
                log.warning("provisioner sync failed: %s", error)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: provision until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.provisioner")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="where volumes' directories go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Provisioner(KubeClient.from_kubeconfig(args.kubeconfig), args.root, stop).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
