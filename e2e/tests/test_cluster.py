"""The harness's own story: a real control plane, a node that runs pods (containers on
the real node), Deployments that roll pod by pod, crash loops,
garbage collection, and traffic through the Service without dropping a request."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from modeldeploy_e2e import netns
from modeldeploy_e2e.harness import ClusterHandle, wait_for
from modeldeploy_e2e.kube import KubeError
from modeldeploy_e2e.traffic import Traffic

JsonDict = dict[str, Any]
PORT = 8080


def web_deployment(image: str, version: str, replicas: int = 3) -> JsonDict:
    """A Deployment of python's http.server serving a ConfigMap with the version in it."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": version}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "http",
                        "image": image,
                        "command": ["python", "-m", "http.server", "--bind", "$(POD_IP)",
                                    "--directory", "/srv/www", str(PORT)],
                        "env": [{"name": "POD_IP", "valueFrom": {
                            "fieldRef": {"fieldPath": "status.podIP"}}}],
                        "ports": [{"name": "http", "containerPort": PORT}],
                        # Tolerant of a slow answer on a loaded machine: this test is about
                        # the controller keeping 3 ready, not about one late probe.
                        "readinessProbe": {"httpGet": {"path": "/version", "port": "http"},
                                           "periodSeconds": 1, "failureThreshold": 3,
                                           "timeoutSeconds": 5},
                        "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
                        "volumeMounts": [{"name": "www", "mountPath": "/srv/www"}],
                    }],
                    "volumes": [{"name": "www", "configMap": {"name": f"www-{version}"}}],
                },
            },
        },
    }


def www_config_map(version: str) -> JsonDict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"www-{version}"},
            "data": {"version": version}}


WEB_SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def deployment_available(cluster: ClusterHandle, namespace: str, name: str,
                         replicas: int) -> bool:
    dep = cluster.client.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    st = dep.get("status", {})
    available = any(c["type"] == "Available" and c["status"] == "True"
                    for c in st.get("conditions", []))
    return available and st.get("updatedReplicas") == replicas and \
        st.get("readyReplicas") == replicas and st.get("replicas") == replicas and \
        st.get("observedGeneration") == dep["metadata"]["generation"]


def pods(cluster: ClusterHandle, namespace: str, selector: str) -> list[JsonDict]:
    items: list[JsonDict] = cluster.client.get(f"/api/v1/namespaces/{namespace}/pods",
                                               labelSelector=selector)["items"]
    return items


def is_ready(pod: JsonDict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def test_api_server_reports_its_real_version_and_the_node_is_ready(
        cluster: ClusterHandle) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["major"] == "1"
    if cluster.local is not None:
        assert version["gitVersion"] == "v1.36.3"
    nodes = cluster.get_json("nodes")["items"]
    ready = [n["metadata"]["name"] for n in nodes
             if any(c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"]["conditions"])]
    assert ready, f"no Ready node among {[n['metadata']['name'] for n in nodes]}"


TEST_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.harness.modeldeploy.dev}
spec:
  group: harness.modeldeploy.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
"""


def widget(name: str, low: int, high: int) -> str:
    return json.dumps({"apiVersion": "harness.modeldeploy.dev/v1", "kind": "Widget",
                       "metadata": {"name": name},
                       "spec": {"minReplicas": low, "maxReplicas": high}})


def test_crd_applies_and_the_api_server_rejects_an_object_breaking_its_cel_rule(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply(TEST_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/widgets.harness.modeldeploy.dev")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("good", 1, 3))
    bad = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("bad", 5, 2),
                          check=False)
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    negative = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("neg", -1, 2),
                               check=False)
    assert "should be greater than or equal to 0" in negative.stderr
    names = [w["metadata"]["name"] for w in cluster.get_json("widgets", "-n", namespace)["items"]]
    assert names == ["good"]


def test_deployment_rolls_pod_by_pod_while_traffic_sees_no_failure(
        cluster: ClusterHandle, namespace: str) -> None:
    for version in ("v1", "v2"):
        cluster.apply(www_config_map(version), namespace)
    cluster.apply(WEB_SERVICE, namespace)
    cluster.apply(web_deployment(cluster.test_image, "v1"), namespace)
    wait_for("web v1 Available", lambda: deployment_available(cluster, namespace, "web", 3),
             timeout=90)
    first = pods(cluster, namespace, "app=web")
    assert all(p["status"]["podIP"] != first[0]["status"]["podIP"] for p in first[1:])

    observed: list[tuple[int, int, int]] = []  # (pods alive, ready, new-version not ready)
    stop = threading.Event()

    def watch_rollout() -> None:
        while not stop.is_set():
            current = [p for p in pods(cluster, namespace, "app=web")
                       if not p["metadata"].get("deletionTimestamp")]
            ready = sum(is_ready(p) for p in current)
            fresh = sum(1 for p in current
                        if p["metadata"]["labels"]["version"] == "v2" and not is_ready(p))
            observed.append((len(current), ready, fresh))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_rollout, daemon=True)
    with Traffic(cluster.client, namespace, "web", port=80, path="/version",
                 interval=0.02, netns=cluster.netns, classify=str) as traffic:
        wait_for("traffic flowing", lambda: traffic.report.successes > 20, timeout=30)
        watcher.start()
        cluster.apply(web_deployment(cluster.test_image, "v2"), namespace)
        wait_for("web v2 Available", lambda: deployment_available(cluster, namespace, "web", 3),
                 timeout=120)
        wait_for("v2 answering", lambda: all(
            p["metadata"]["labels"]["version"] == "v2"
            for p in pods(cluster, namespace, "app=web")), timeout=60)
        time.sleep(1.0)
    stop.set()
    watcher.join()
    report = traffic.report
    assert report.failures == 0, report.summary()
    assert report.successes > 100, report.summary()
    assert set(report.by_answer) == {"v1", "v2"}, "traffic reached both old and new pods"
    assert max(alive for alive, _, _ in observed) <= 4  # maxSurge 1 over 3 replicas
    assert min(ready for _, ready, _ in observed) >= 3  # maxUnavailable 0
    assert max(fresh for _, _, fresh in observed) <= 1  # one new pod at a time
    assert traffic.address is not None
    host, port = traffic.address
    assert _get(cluster, f"http://{host}:{port}/version") == b"v2"


def _get(cluster: ClusterHandle, url: str) -> bytes:
    """GET `url` from where the cluster's pods and Services are reached."""
    status, body = netns.http_get(cluster.netns, url)
    assert status == 200, (url, status)
    return body


def crashing_pod(image: str, message: str) -> JsonDict:
    script = (f"open('/dev/termination-log', 'w').write({message!r}); "
              "import sys; sys.exit(3)")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
            "spec": {"containers": [{"name": "main", "image": image,
                                     "command": ["python", "-c", script]}]}}


def test_crashing_container_shows_crash_loop_back_off_with_its_termination_message(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply(crashing_pod(cluster.test_image, "model file is corrupt"), namespace)

    def crash_looping() -> JsonDict | None:
        pod = cluster.client.get(f"/api/v1/namespaces/{namespace}/pods/crasher")
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        return statuses[0] if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for("CrashLoopBackOff", crash_looping, timeout=60)
    assert status["restartCount"] >= 1
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "model file is corrupt"
    assert status["ready"] is False
    # What `kubectl get pod` shows between the restarts (a real kubelet restarts it after
    # 10, 20, 40 s: in between it is briefly Running again).
    wait_for("kubectl get pod showing CrashLoopBackOff",
             lambda: "CrashLoopBackOff" in cluster.kubectl(
                 "get", "pod", "crasher", "-n", namespace).stdout, timeout=60)
    def back_off_event() -> bool:
        events = cluster.get_json("events", "-n", namespace,
                                  "--field-selector", "involvedObject.name=crasher")["items"]
        return "BackOff" in {e["reason"] for e in events}

    # The node posts the event after the status it reports: wait for it, bounded.
    wait_for("a BackOff event", back_off_event, timeout=30)


def test_deleting_a_deployment_collects_its_pods_and_their_processes_exit(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply(www_config_map("v1"), namespace)
    cluster.apply(web_deployment(cluster.test_image, "v1", replicas=2), namespace)
    wait_for("web Available", lambda: deployment_available(cluster, namespace, "web", 2),
             timeout=90)
    running = pods(cluster, namespace, "app=web")
    # "containerd://<id>" on the real node.
    ids = [p["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[-1]
           for p in running]
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--wait=false")
    wait_for("pods garbage-collected", lambda: not pods(cluster, namespace, "app=web"),
             timeout=60)
    if cluster.local is not None:  # its containerd's own task list
        tasks = cluster.local.ctr("tasks", "ls", "-q").stdout.split()
        assert not [task for task in ids if task in tasks]
    with pytest.raises(KubeError, match="404"):
        cluster.client.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets/"
                           f"{running[0]['metadata']['ownerReferences'][0]['name']}")


def gpu_pod(image: str, name: str, gpus: int) -> JsonDict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{
                "name": "main", "image": image, "command": ["sleep", "60"],
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}


def test_scheduler_places_pods_by_the_nodes_extended_resources(
        cluster: ClusterHandle, namespace: str) -> None:
    nodes = cluster.get_json("nodes")["items"]
    capacity = max(int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0"))
                   for n in nodes)
    if cluster.local is not None:
        assert capacity == 2  # what RealNodeCluster advertises by default
    cluster.apply(gpu_pod(cluster.test_image, "fits", 1), namespace)
    cluster.apply(gpu_pod(cluster.test_image, "too-big", capacity + 1), namespace)
    wait_for("fits scheduled", lambda: cluster.client.get(
        f"/api/v1/namespaces/{namespace}/pods/fits").get("spec", {}).get("nodeName"),
        timeout=60)

    def unschedulable() -> bool:
        pod = cluster.client.get(f"/api/v1/namespaces/{namespace}/pods/too-big")
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   and "nvidia.com/gpu" in c.get("message", "")
                   for c in pod.get("status", {}).get("conditions", []))

    wait_for("too-big refused for lack of GPUs", unschedulable, timeout=60)
