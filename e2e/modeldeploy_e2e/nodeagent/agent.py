"""The node agent: registers the Node, keeps its Lease and Ready condition fresh, and keeps
one PodWorker per pod bound to the node."""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.nodeagent.process import kill_leftovers
from modeldeploy_e2e.nodeagent.worker import NodeContext, PodWorker, now_iso

JsonDict = dict[str, Any]
log = logging.getLogger(__name__)

LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 20.0
SYNC_EVERY = 0.5


def node_object(name: str, labels: dict[str, str]) -> JsonDict:
    """The Node the agent registers (spec only; status is patched separately)."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", **labels}},
        "spec": {},
    }


def node_status(capacity: dict[str, str], host_ip: str, name: str, now: str,
                ready_since: str, kubelet_port: int = 0) -> JsonDict:
    """The Node status: capacity = allocatable, Ready with a fresh heartbeat."""
    def condition(kind: str, ok: bool, reason: str, message: str) -> JsonDict:
        return {"type": kind, "status": "True" if ok else "False", "reason": reason,
                "message": message, "lastHeartbeatTime": now, "lastTransitionTime": ready_since}

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": name}],
        "conditions": [
            condition("MemoryPressure", False, "KubeletHasSufficientMemory", "local agent"),
            condition("DiskPressure", False, "KubeletHasNoDiskPressure", "local agent"),
            condition("PIDPressure", False, "KubeletHasSufficientPID", "local agent"),
            condition("Ready", True, "KubeletReady", "modeldeploy node agent is posting status"),
        ],
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux",
            "osImage": platform.platform(), "kernelVersion": platform.release(),
            "kubeletVersion": "modeldeploy-nodeagent", "kubeProxyVersion": "",
            "containerRuntimeVersion": "process://local", "machineID": "", "systemUUID": "",
            "bootID": "",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
    }


def micro_time() -> str:
    """MicroTime format used by Leases."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """Owns the Node object and the pod workers."""

    def __init__(self, ctx: NodeContext, capacity: dict[str, str],
                 labels: dict[str, str] | None = None, kubelet_port: int = 0) -> None:
        self.kubelet_port = kubelet_port
        self.ctx = ctx
        self.client: KubeClient = ctx.client
        self.capacity = capacity
        self.labels = labels or {}
        self.workers: dict[str, PodWorker] = {}
        self.stop = threading.Event()
        self.ready_since = now_iso()

    def register(self) -> None:
        """Create the Node (or adopt an existing one) and post its status."""
        try:
            self.client.create("/api/v1/nodes", node_object(self.ctx.node_name, self.labels))
        except KubeError as error:
            if error.status != 409:
                raise
        self.post_status()
        self.renew_lease()

    def post_status(self) -> None:
        """Patch the Node status with capacity and a fresh Ready heartbeat."""
        body = node_status(self.capacity, self.ctx.host_ip, self.ctx.node_name, now_iso(),
                           self.ready_since, self.kubelet_port)
        self.client.merge_patch(f"/api/v1/nodes/{self.ctx.node_name}/status", {"status": body})

    def renew_lease(self) -> None:
        """Create or renew the node's Lease in kube-node-lease."""
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        name = self.ctx.node_name
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro_time()}
        try:
            self.client.merge_patch(f"{path}/{name}", {"spec": spec})
        except KubeError as error:
            if error.status != 404:
                raise
            self.client.create(path, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                      "metadata": {"name": name, "namespace": "kube-node-lease"},
                                      "spec": spec})

    def heartbeat_loop(self) -> None:
        """Renew the Lease every RENEW_EVERY s and the Ready condition every STATUS_EVERY s."""
        last_status = time.monotonic()
        while not self.stop.wait(RENEW_EVERY):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY:
                    self.post_status()
                    last_status = time.monotonic()
            except (KubeError, OSError) as error:
                log.warning("heartbeat failed: %s", error)

    def find_logs(self, namespace: str, pod: str,
                  container: str) -> tuple[Path, Callable[[], bool]] | None:
        """Locate a container's output file for the log server."""
        for worker in list(self.workers.values()):
            meta = worker.pod["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, pod):
                names = [c.name for c in worker.init + worker.main]
                if container not in names:
                    return None
                return worker.dir / "containers" / container / "output.log", worker.is_alive
        return None

    def sync_once(self) -> None:
        """Start workers for new pods, feed updates, mark vanished pods gone."""
        listing = self.client.get("/api/v1/pods",
                                  fieldSelector=f"spec.nodeName={self.ctx.node_name}")
        seen = set()
        for pod in listing.get("items", []):
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and \
                        pod["metadata"].get("deletionTimestamp") is None and \
                        pod.get("status", {}).get("podIP") is not None:
                    continue  # finished before an agent restart; nothing to run
                worker = PodWorker(self.ctx, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.gone.set()
            if not worker.is_alive():
                del self.workers[uid]

    def run(self) -> None:
        """Register, then sync pods until `stop` is set; stop every container on the way out."""
        leftovers = kill_leftovers(self.ctx.state_dir / "pods")
        if leftovers:
            log.warning("killed %d container processes a previous agent left running: %s",
                        len(leftovers), leftovers)
        self.register()
        heartbeat = threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        first = True
        try:
            while not self.stop.is_set():
                try:
                    self.sync_once()
                    if first:
                        self.ctx.ips.release_except(set(self.workers))
                        first = False
                except (KubeError, OSError) as error:
                    log.warning("pod sync failed: %s", error)
                self.stop.wait(SYNC_EVERY)
        finally:
            for worker in self.workers.values():
                worker.stopping.set()
            for worker in self.workers.values():
                worker.join(timeout=10)
                worker.kill_now()
            self.ctx.ips.release_all()
