"""Operator e2e: the shared model cache's lifecycle on a hostPath cache.

The chart's per-node collector (`modeldeploy-runtime cache gc --loop`, a DaemonSet) runs
on the node like any pod; the operator publishes what each ModelDeployment still
references; the test reads the node's cache directory itself (it is the local cluster's
host) and the status the collector's reports fold into.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from modeldeploy_e2e import workload
from modeldeploy_e2e.helm import HelmRelease
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"
GC_KINDS = {"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
CLAIM_GC_KINDS = {"Deployment", "ServiceAccount", "ClusterRole", "RoleBinding"}


def on_disk(root: Path, model: str = NAME) -> set[str]:
    """Complete versions in the node's cache directory (a manifest marks one complete)."""
    folder = root / model
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir()
            if not p.name.startswith(".") and (p / ".modeldeploy-manifest.json").is_file()}


def model_bytes() -> int:
    return sum(p.stat().st_size for p in workload.minilm_dir().rglob("*") if p.is_file())


@contextlib.contextmanager
def cache_collector(op_cluster: Cluster, namespace: str, host_dir: Path, tmp_path: Path,
                    min_age: int) -> Iterator[None]:
    """The chart's collector DaemonSet (and only it), installed for `host_dir`."""
    with chart_collectors(op_cluster, namespace, tmp_path, GC_KINDS, {
        "cacheGC.enabled": "true", "cacheGC.hostPath": str(host_dir),
        "cacheGC.minAgeSeconds": str(min_age),
    }):
        yield


@contextlib.contextmanager
def chart_collectors(op_cluster: Cluster, namespace: str, tmp_path: Path, kinds: set[str],
                     values: dict[str, str]) -> Iterator[None]:
    """The chart's cache collector objects (and only them), rendered with `values`."""
    release = HelmRelease(f"gc-{secrets.token_hex(3)}", namespace, op_cluster.kubeconfig,
                          home=tmp_path / "helm-home")
    rendered = release.template({
        "cacheGC.intervalSeconds": "2",
        "runtime.image": op_cluster.runtime_image or "local/modeldeploy/runtime:dev",
        **values,
    })
    objects = [o for o in yaml.safe_load_all(rendered)
               if o and o["kind"] in kinds and "cache-gc" in o["metadata"]["name"]]
    assert {o["kind"] for o in objects} == kinds
    for obj in objects:
        op_cluster.apply(obj)
    try:
        yield
    finally:
        for obj in objects:
            if obj["kind"].startswith("Cluster"):
                op_cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"],
                                   "--wait=false", check=False)


def hostpath_manifest(namespace: str, version: str, endpoint: str, host_dir: Path,
                      **cache: Any) -> dict[str, Any]:
    manifest = workload.minilm_manifest(NAME, namespace, version=version, endpoint=endpoint,
                                        replicas=1)
    manifest["spec"]["cache"] = {"volume": "hostPath", "hostPath": str(host_dir), **cache}
    return manifest


def roll_out(op_cluster: Cluster, manifest: dict[str, Any], version: str) -> dict[str, Any]:
    op_cluster.apply(manifest)
    return workload.wait_for_status(op_cluster.client, manifest["metadata"]["namespace"],
                                    NAME, workload.available_at(version), 400,
                                    f"{version} Available")


def events(op_cluster: Cluster, namespace: str, reason: str) -> list[str]:
    items = op_cluster.client.get(f"/api/v1/namespaces/{namespace}/events").get("items", [])
    return [e.get("message", "") for e in items if e.get("reason") == reason]


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """The node's cache directory, as a node's /var/cache/modeldeploy would be: every
    directory above it traversable by the runtime's user (pytest's tmp_path is not)."""
    folder = Path(tempfile.mkdtemp(prefix="md-e2e-node-cache-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_three_versions_rolled_out_in_turn_leave_only_the_referenced_one_on_disk(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, host_dir: Path, tmp_path: Path,
) -> None:
    with cache_collector(op_cluster, md_namespace, host_dir, tmp_path, min_age=5):
        for version in ("v1", "v2", "v3"):
            roll_out(op_cluster, hostpath_manifest(
                md_namespace, version, minilm_s3.endpoint, host_dir), version)
            print(f"after {version}: on disk {sorted(on_disk(host_dir))}")
        workload.wait_until(lambda: on_disk(host_dir) == {"v3"}, 120,
                            "v1 and v2 removed from the node's cache")
        status = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME,
            lambda s: [v["version"] for v in (s.get("cache") or {}).get("versions", [])]
            == ["v3"], 60, "status.cache.versions showing only v3")
    references = {r["version"]: r["roles"] for r in status["cache"]["references"]}
    assert references == {"v3": ["current", "target", "lastKnownGood"]}
    (cached,) = status["cache"]["versions"]
    assert cached["nodes"] == 1 and cached["bytes"] == model_bytes()
    removed = events(op_cluster, md_namespace, "CacheVersionRemoved")
    for version in ("v1", "v2"):
        assert any(f"{NAME}/{version}" in m and f"freed {model_bytes()} bytes" in m
                   for m in removed), removed
    described = op_cluster.kubectl("describe", "md", NAME, "-n", md_namespace).stdout
    assert "Cache:" in described and "v3" in described, described


def test_a_pvc_cache_gets_its_own_collector_that_keeps_only_the_referenced_version(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, tmp_path: Path,
) -> None:
    claim = "model-cache"
    op_cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": claim, "namespace": md_namespace},
                      "spec": {"accessModes": ["ReadWriteMany"],
                               "resources": {"requests": {"storage": "1Gi"}}}})

    def manifest(version: str) -> dict[str, Any]:
        m = workload.minilm_manifest(NAME, md_namespace, version=version,
                                     endpoint=minilm_s3.endpoint, replicas=1)
        m["spec"]["cache"] = {"volume": "persistentVolumeClaim", "claimName": claim}
        return m

    with chart_collectors(op_cluster, md_namespace, tmp_path, CLAIM_GC_KINDS, {
        "cacheGC.enabled": "false", "cacheGC.minAgeSeconds": "5",
        "cacheGC.claims[0].namespace": md_namespace, "cacheGC.claims[0].claimName": claim,
    }):
        for version in ("v1", "v2", "v3"):
            roll_out(op_cluster, manifest(version), version)
        bound = op_cluster.client.get(
            f"/api/v1/namespaces/{md_namespace}/persistentvolumeclaims/{claim}")
        volume = op_cluster.client.get(
            f"/api/v1/persistentvolumes/{bound['spec']['volumeName']}")
        root = Path(volume["spec"]["hostPath"]["path"])  # the claim's files, on this host
        print(f"after v3: on the claim {sorted(on_disk(root))}")
        workload.wait_until(lambda: on_disk(root) == {"v3"}, 120,
                            "v1 and v2 removed from the claim")
        status = workload.wait_for_status(
            op_cluster.client, md_namespace, NAME,
            lambda s: [v["version"] for v in (s.get("cache") or {}).get("versions", [])]
            == ["v3"], 60, "status.cache.versions showing only v3")
    (cached,) = status["cache"]["versions"]
    assert cached["nodeNames"] == [f"pvc/{claim}"] and cached["bytes"] == model_bytes()
    removed = events(op_cluster, md_namespace, "CacheVersionRemoved")
    for version in ("v1", "v2"):
        assert any(m.startswith(f"claim {claim}: removed cached {NAME}/{version}")
                   for m in removed), removed


def test_a_size_limit_evicts_the_oldest_unreferenced_version(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, host_dir: Path, tmp_path: Path,
) -> None:
    size = model_bytes()
    limit = str(int(size * 2.5))  # two versions fit, three do not
    references = host_dir / ".modeldeploy-references.json"

    def referenced() -> list[str]:
        with contextlib.suppress(OSError, ValueError):
            return sorted(v for _, v in json.loads(references.read_text())["references"])
        return []

    # A collector that never removes on its own (min age an hour): only the limit evicts.
    with cache_collector(op_cluster, md_namespace, host_dir, tmp_path, min_age=3600):
        for version in ("v1", "v2"):
            roll_out(op_cluster, hostpath_manifest(
                md_namespace, version, minilm_s3.endpoint, host_dir, sizeLimit=limit),
                version)
        assert on_disk(host_dir) == {"v1", "v2"}
        # The fetch of v3 reads the node's reference set: wait until it has caught up.
        workload.wait_until(lambda: referenced() == ["v2"], 60, "references = v2 only")
        os_times = {v: (host_dir / NAME / f".{v}.used").stat().st_mtime for v in ("v1", "v2")}
        assert os_times["v1"] < os_times["v2"]
        roll_out(op_cluster, hostpath_manifest(
            md_namespace, "v3", minilm_s3.endpoint, host_dir, sizeLimit=limit), "v3")
    assert on_disk(host_dir) == {"v2", "v3"}
    used = sum(p.stat().st_size for p in host_dir.rglob("*") if p.is_file()
               and not p.name.startswith(".") and "/." not in str(p.relative_to(host_dir)))
    assert used <= int(limit)


def test_a_version_that_cannot_fit_the_size_limit_fails_with_cache_full(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, host_dir: Path,
) -> None:
    op_cluster.apply(hostpath_manifest(md_namespace, "v1", minilm_s3.endpoint, host_dir,
                                       sizeLimit="1M"))
    status = workload.wait_for_status(
        op_cluster.client, md_namespace, NAME,
        lambda s: any(c.get("reason") == "CacheFull" for c in s.get("conditions", [])),
        300, "a CacheFull condition")
    message = status["message"]
    assert "cache.sizeLimit is 1000000 bytes" in message and "raise spec.cache.sizeLimit" \
        in message, message
    assert status["phase"] == "Failed"
    # Refused before writing a byte: no entry, no temporary directory.
    assert on_disk(host_dir) == set()
    leftovers = [p.name for p in (host_dir / NAME).iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_the_api_server_refuses_a_size_limit_of_zero_or_less_naming_the_field(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, host_dir: Path,
) -> None:
    for limit in ("0", "0Gi", "-1Gi"):
        manifest = hostpath_manifest(md_namespace, "v1", minilm_s3.endpoint, host_dir,
                                     sizeLimit=limit)
        result = op_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest),
                                    check=False)
        assert result.returncode != 0, f"sizeLimit {limit!r}: the API server accepted it"
        assert "spec.cache.sizeLimit" in result.stderr, result.stderr
        assert "more than 0 bytes" in result.stderr, result.stderr
    manifest = hostpath_manifest(md_namespace, "v1", minilm_s3.endpoint, host_dir,
                                 sizeLimit="0.5")  # half a byte rounds up to one: accepted
    op_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest))


# -- prefetch ---------------------------------------------------------------------------


class PodTimeline:
    """First and last moments (time.time()) each version's serving pods were seen, and when
    each was first seen terminating, polled every 0.1 s while a rollout runs."""

    def __init__(self, op_cluster: Cluster, namespace: str, name: str) -> None:
        self.client, self.namespace, self.name = op_cluster.client, namespace, name
        self.created: dict[str, float] = {}
        self.terminating: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        selector = f"modeldeploy.dev/modeldeployment={self.name}"
        while not self.stop.is_set():
            now = time.time()
            pods = self.client.get(f"/api/v1/namespaces/{self.namespace}/pods",
                                   labelSelector=selector).get("items", [])
            for pod in pods:
                version = pod["metadata"]["labels"].get("modeldeploy.dev/version", "")
                self.created.setdefault(version, now)
                if pod["metadata"].get("deletionTimestamp"):
                    self.terminating.setdefault(version, now)
            time.sleep(0.1)

    def __enter__(self) -> PodTimeline:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def overlap(self, old: str, new: str) -> float:
        """Seconds from the first pod of `new` to the old version's pod starting to drain."""
        return self.terminating[old] - self.created[new]


def first_pod_created(op_cluster: Cluster, namespace: str, name: str, version: str) -> float:
    pods = op_cluster.client.get(
        f"/api/v1/namespaces/{namespace}/pods",
        labelSelector=f"modeldeploy.dev/modeldeployment={name},modeldeploy.dev/version={version}",
    ).get("items", [])
    stamps = [pod["metadata"]["creationTimestamp"] for pod in pods]
    return min(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps)


def rollout_v1_to_v2(op_cluster: Cluster, namespace: str, endpoint: str, host_dir: Path,
                     prefetch: bool) -> tuple[PodTimeline, list[str]]:
    def manifest(version: str) -> dict[str, Any]:
        m = hostpath_manifest(namespace, version, endpoint, host_dir, prefetch=prefetch)
        m["metadata"]["name"] = md_name(prefetch)
        return m

    name = md_name(prefetch)
    op_cluster.apply(manifest("v1"))
    workload.wait_for_status(op_cluster.client, namespace, name, workload.available_at("v1"),
                             400, f"{name} v1 Available")
    steps: list[str] = []
    with PodTimeline(op_cluster, namespace, name) as timeline:
        op_cluster.apply(manifest("v2"))

        def available() -> bool:
            status = workload.status_of(op_cluster.client, namespace, name)
            step = next((c["reason"] for c in status.get("conditions", [])
                         if c["type"] == "Progressing"), "")
            if not steps or steps[-1] != step:
                steps.append(step)
            return workload.available_at("v2")(status) and "v1" in timeline.terminating

        workload.wait_until(available, 400, f"{name} v2 Available, v1 draining", interval=0.2)
    return timeline, steps


def md_name(prefetch: bool) -> str:
    return "prefetched" if prefetch else "plain"


def test_prefetch_puts_the_files_on_the_node_before_the_first_pod_and_shortens_the_overlap(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, tmp_path: Path,
) -> None:
    windows = {}
    for prefetch in (False, True):
        host_dir = tmp_path / f"cache-{md_name(prefetch)}"
        host_dir.mkdir()
        timeline, steps = rollout_v1_to_v2(op_cluster, md_namespace, minilm_s3.endpoint,
                                           host_dir, prefetch)
        windows[prefetch] = timeline.overlap("v1", "v2")
        print(f"{md_name(prefetch)}: steps {steps}; old and new versions overlapped "
              f"{windows[prefetch]:.1f} s")
        if prefetch:
            assert "Prefetching" in steps, steps
            files_ready = (host_dir / NAME / "v2" / ".modeldeploy-manifest.json").stat().st_mtime
            created = first_pod_created(op_cluster, md_namespace, md_name(True), "v2")
            seen = timeline.created["v2"]
            print(f"v2 files complete on the node at {files_ready:.2f}; first v2 serving pod "
                  f"created at {created:.0f} (API, whole seconds), first seen at {seen:.2f}")
            # creationTimestamp has whole seconds: the pod came at least a second later,
            # or within the second the files were renamed into place.
            assert files_ready < created + 1.0
            assert files_ready < seen
            (pod,) = op_cluster.client.get(
                f"/api/v1/namespaces/{md_namespace}/pods",
                labelSelector="modeldeploy.dev/modeldeployment=prefetched,"
                "modeldeploy.dev/version=v2").get("items", [])
            fetch_log = op_cluster.kubectl("logs", pod["metadata"]["name"], "-c", "fetch",
                                           "-n", md_namespace).stdout
            assert any(line.startswith("hit ") for line in fetch_log.splitlines()), fetch_log
        else:
            assert "Prefetching" not in steps, steps
    print(f"overlap window without prefetch {windows[False]:.1f} s, "
          f"with prefetch {windows[True]:.1f} s")


def test_a_first_deploy_onto_a_selected_node_prefetches_before_its_first_pod(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, host_dir: Path,
) -> None:
    (node,) = op_cluster.client.get("/api/v1/nodes")["items"]
    hostname = node["metadata"]["labels"]["kubernetes.io/hostname"]
    manifest = hostpath_manifest(md_namespace, "v1", minilm_s3.endpoint, host_dir,
                                 prefetch=True)
    manifest["spec"]["pod"] = {"nodeSelector": {"kubernetes.io/hostname": hostname}}
    steps: list[str] = []
    op_cluster.apply(manifest)

    def available() -> bool:
        status = workload.status_of(op_cluster.client, md_namespace, NAME)
        step = next((c["reason"] for c in status.get("conditions", [])
                     if c["type"] == "Progressing"), "")
        if not steps or steps[-1] != step:
            steps.append(step)
        return workload.available_at("v1")(status)

    workload.wait_until(available, 400, "v1 Available", interval=0.2)
    print(f"first deploy onto {hostname}: steps {steps}")
    assert "Prefetching" in steps, steps
    files_ready = (host_dir / NAME / "v1" / ".modeldeploy-manifest.json").stat().st_mtime
    created = first_pod_created(op_cluster, md_namespace, NAME, "v1")
    assert files_ready < created + 1.0  # creationTimestamp has whole seconds
    (pod,) = op_cluster.client.get(
        f"/api/v1/namespaces/{md_namespace}/pods",
        labelSelector=f"modeldeploy.dev/modeldeployment={NAME}").get("items", [])
    fetch_log = op_cluster.kubectl("logs", pod["metadata"]["name"], "-c", "fetch",
                                   "-n", md_namespace).stdout
    assert any(line.startswith("hit ") for line in fetch_log.splitlines()), fetch_log
