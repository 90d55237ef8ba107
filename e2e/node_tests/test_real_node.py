"""The real node: kubelet, containerd and runc run the project's own images, Services go
through kube-proxy, names through CoreDNS, and the operator, installed by its chart, rolls a
model out and flips a bad version back with zero failed requests sent to the ClusterIP.

Everything runs inside the node's network namespace; the host reaches only the API server
(a loopback relay) and, for uploads, MinIO (another relay).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_e2e import faults, images, netns, nodeconfig, nodenet, workload
from modeldeploy_e2e.gomod import required_version
from modeldeploy_e2e.helm import HelmRelease
from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.paths import REPO_ROOT
from modeldeploy_e2e.realnode import RealNodeCluster, install_project_images
from modeldeploy_e2e.s3 import MinioServer, create_bucket, upload_directory
from modeldeploy_e2e.traffic import cluster_ip

pytestmark = pytest.mark.slow

BUCKET = "models"
SECRET = "modeldeploy-s3"
NAME = "minilm"
BLUE_GREEN = {"type": "BlueGreen", "blueGreen": {"autoPromote": True}}
ROLLING = {"type": "Rolling", "rolling": {"maxSurge": 1, "maxUnavailable": 0}}
VALUES = REPO_ROOT / "charts" / "modeldeploy" / "ci" / "realnode-values.yaml"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNodeCluster]:
    """The real node, with both project images pushed to its registry and the runtime
    image pulled in advance (gigabytes: a pod's pull would outlast a rollout's deadline)."""
    cluster = RealNodeCluster()
    cluster.up()
    install_project_images(cluster)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def client(node: RealNodeCluster) -> KubeClient:
    return KubeClient.from_kubeconfig(node.kubeconfig)


@pytest.fixture
def namespace(node: RealNodeCluster) -> Iterator[str]:
    name = f"rn-{secrets.token_hex(3)}"
    node.kubectl("create", "namespace", name)
    workload.wait_until(lambda: node.kubectl("get", "serviceaccount", "default", "-n", name,
                                             check=False).returncode == 0, 30, "default SA")
    try:
        yield name
    finally:
        node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_node_registers_with_the_pinned_kubelet_and_containerd_2(
        node: RealNodeCluster) -> None:
    print(node.kubectl("get", "node", "-o", "wide").stdout)
    [found] = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    info, status = found["status"]["nodeInfo"], found["status"]
    go = REPO_ROOT / "e2e" / "go"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert info["kubeletVersion"] == required_version(go / "kubelet" / "go.mod",
                                                      "k8s.io/kubernetes")
    assert info["containerRuntimeVersion"] == "containerd://" + required_version(
        go / "containerd" / "go.mod", "github.com/containerd/containerd/v2").lstrip("v")
    assert {"type": "InternalIP", "address": node.network.node_ip} in status["addresses"]
    assert nodenet.route_violations(nodenet.routes(node.network.name), node.network) == []


def test_cluster_ip_dns_and_pod_routes_stay_inside_the_node(
        node: RealNodeCluster, client: KubeClient, namespace: str) -> None:
    operator = images.project_images()[0].remote_ref(nodeconfig.REGISTRY_ADDRESS)
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                          "containers": [{
                              "name": "web", "image": operator,
                              "command": ["python", "-m", "http.server", "8080"],
                              "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                                 "periodSeconds": 1}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"},
                      "ports": [{"port": 80, "targetPort": 8080}]}}]}))
    node.kubectl("rollout", "status", "-n", namespace, "deploy/web", "--timeout=300s",
                 timeout=320)
    slices = client.get(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                        labelSelector="kubernetes.io/service-name=web")["items"]
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    assert len(addresses) == 2 and all(a.startswith("10.244.") for a in addresses), slices

    ip, port = cluster_ip(client, namespace, "web")
    # kube-proxy programs a new Service's rules asynchronously (its minSyncPeriod); probes
    # leave from ports no later connect gets (netns.probe_ports says why).
    ports = netns.probe_ports(node.network.path)
    workload.wait_until(
        lambda: netns.http_ok(node.network.path, f"http://{ip}:{port}/", source_port=next(ports)),
        30, f"the ClusterIP {ip}:{port} to answer through kube-proxy")

    pod = node.kubectl("get", "pod", "-n", namespace, "-l", "app=web", "-o",
                       "jsonpath={.items[0].metadata.name}").stdout
    probe = ("import socket, urllib.request; "
             f"print(socket.gethostbyname('web.{namespace}.svc.cluster.local')); "
             f"print(urllib.request.urlopen('http://web.{namespace}.svc/').status); "
             "print(open('/proc/net/route').read())")
    out = node.kubectl("exec", "-n", namespace, pod, "--", "python", "-c", probe).stdout
    resolved, status, *table = out.splitlines()
    assert resolved == ip and status == "200"
    # /proc/net/route: hex little-endian destination and gateway per route.
    routes = [{"dst": _hex_ip(cols[1]) + "/" + str(bin(int(cols[7], 16)).count("1")),
               "gateway": _hex_ip(cols[2]) if int(cols[2], 16) else None, "dev": cols[0]}
              for cols in (line.split() for line in table[1:] if line.strip())]
    for route in routes:
        if route["dst"].startswith("0.0.0.0/0"):
            route["dst"] = "default"
    assert nodenet.route_violations(routes, node.network) == [], routes


def _hex_ip(text: str) -> str:
    return ".".join(str(b) for b in int(text, 16).to_bytes(4, "little"))


@pytest.mark.parametrize(("strategy", "kill_operator"), [
    (BLUE_GREEN, False), (ROLLING, False), (BLUE_GREEN, True)],
    ids=["blue-green", "rolling", "blue-green-operator-pod-killed"])
def test_chart_operator_rolls_out_and_flips_back_with_zero_failed_requests_through_cluster_ip(
        node: RealNodeCluster, client: KubeClient, namespace: str, strategy: dict[str, object],
        kill_operator: bool, tmp_path: Path) -> None:
    """The headline promise on a real node: MinIO inside the cluster's namespace behind
    `minio.storage.svc`, the operator from its image under the chart's RBAC, the runtime
    image loading MiniLM; v1 → v2 and a bad v3 flipped back, while requests go to the
    stable Service's ClusterIP through kube-proxy (old pods leave while kube-proxy may still
    route to them: what preStop and the drain are for). With `kill_operator`, the operator's
    pod is force-deleted while v2 rolls out: its Deployment's next pod finishes the job."""
    with MinioServer(tmp_path / "minio", host=node.network.node_ip,
                     netns=node.network.path) as minio:
        create_bucket(minio, BUCKET)
        for version in ("v1", "v2", "v3"):
            upload_directory(minio, BUCKET, f"minilm/{version}", workload.minilm_dir())
        endpoint = _minio_service(node, minio)
        node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
            workload.s3_secret(namespace, SECRET, minio.access_key, minio.secret_key)))
        # The release's name is unique: its ClusterRole and CRDs are cluster-wide.
        release = HelmRelease(f"md-{namespace}", namespace, node.kubeconfig,
                              values_files=[VALUES],
                              set_values={"watchNamespaces[0]": namespace},
                              home=tmp_path / "helm")
        release.install(wait="300s")
        try:
            _roll_out_and_flip_back(node, client, namespace, endpoint, strategy,
                                    kill_operator)
        finally:
            release.uninstall()


def _roll_out_and_flip_back(node: RealNodeCluster, client: KubeClient, namespace: str,
                            endpoint: str, strategy: dict[str, object],
                            kill_operator: bool = False) -> None:
    """v1, then v2 under traffic to the ClusterIP, then a bad v3 flipped back."""
    def manifest(version: str) -> dict[str, object]:
        return workload.minilm_manifest(NAME, namespace, version=version,
                                        endpoint=endpoint, strategy=strategy,
                                        replicas=1)

    node.kubectl("apply", "-f", "-", input=json.dumps(manifest("v1")))
    workload.wait_for_status(client, namespace, NAME, workload.available_at("v1"),
                             600, "v1 available")
    # A first blue-green version's stable Service is made at its promotion, and kube-proxy
    # learns a new Service within its sync period (about a second here): the traffic helper
    # waits for its first answer, as any client of a new Service. What is measured is the
    # rollouts after.
    with workload.inference_traffic(client, namespace, NAME,
                                    netns=node.network.path) as traffic:
        node.kubectl("apply", "-f", "-", input=json.dumps(manifest("v2")))
        if kill_operator:
            _kill_operator_pod_mid_rollout(node, client, namespace)
        workload.wait_for_status(client, namespace, NAME, workload.available_at("v2"),
                                 600, "v2 available")
        bad = faults.wrong_expected_output(NAME, namespace, endpoint, version="v3",
                                           strategy=strategy, replicas=1)
        node.kubectl("apply", "-f", "-", input=json.dumps(bad))
        workload.wait_for_status(
            client, namespace, NAME,
            lambda st: st.get("phase") == "RolledBack" and st.get("currentVersion") == "v2",
            600, "v3 flipped back to v2")
    report = traffic.report
    print(report.summary())
    assert report.failures == 0, report.summary()
    assert report.successes > 50, report.summary()
    # What the Service answers is MiniLM's embedding, as sentence-transformers computes it.
    assert traffic.address is not None
    ip, port = traffic.address
    answer = workload.infer(ip, port, NAME, [workload.VALIDATION_INPUT],
                            netns=node.network.path)
    assert workload.cosine(workload.embedding_of(answer), workload.minilm_embedding()) > 0.999


def _kill_operator_pod_mid_rollout(node: RealNodeCluster, client: KubeClient,
                                   namespace: str) -> None:
    """Force-delete the operator's pod once v2's rollout has begun (no grace: the kubelet
    kills it at once), and wait for the Deployment's replacement to be running."""
    selector = "app.kubernetes.io/name=modeldeploy"
    workload.wait_for_status(client, namespace, NAME,
                             lambda st: st.get("targetVersion") == "v2", 120, "v2 under way")
    before = node.kubectl("get", "pod", "-n", namespace, "-l", selector, "-o",
                          "jsonpath={.items[0].metadata.name}").stdout
    node.kubectl("delete", "pod", "-n", namespace, before, "--grace-period=0", "--force")

    def replacement_running() -> bool:
        pods = json.loads(node.kubectl("get", "pod", "-n", namespace, "-l", selector, "-o",
                                       "json").stdout)["items"]
        return any(p["metadata"]["name"] != before and p["status"].get("phase") == "Running"
                   for p in pods)

    workload.wait_until(replacement_running, 120, "the operator's replacement pod")


def _minio_service(node: RealNodeCluster, minio: MinioServer) -> str:
    """`minio.storage.svc`: a Service without a selector whose EndpointSlice names MinIO
    on the node's address, as a cluster fronts an external store."""
    node.kubectl("create", "namespace", "storage", check=False)
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "minio", "namespace": "storage"},
             "spec": {"ports": [{"name": "s3", "port": 9000, "targetPort": minio.port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "minio-node", "namespace": "storage",
                          "labels": {"kubernetes.io/service-name": "minio"}},
             "addressType": "IPv4",
             "ports": [{"name": "s3", "port": minio.port, "protocol": "TCP"}],
             "endpoints": [{"addresses": [node.network.node_ip],
                            "conditions": {"ready": True}}]}]}))
    return "http://minio.storage.svc:9000"
