"""Pods as the node runs them: init containers, env from Secrets/ConfigMaps/fields,
volumes at their mountPaths, probes that restart, memory limits, graceful deletion."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from modeldeploy_e2e import netns
from modeldeploy_e2e.harness import ClusterHandle, wait_for

JsonDict = dict[str, Any]


def get_pod(cluster: ClusterHandle, namespace: str, name: str) -> JsonDict:
    pod: JsonDict = cluster.client.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return pod


def pod_when(cluster: ClusterHandle, namespace: str, name: str,
             predicate: Callable[[JsonDict], bool]) -> Callable[[], JsonDict | None]:
    """A wait_for check returning the pod once `predicate(pod)` holds."""
    def check() -> JsonDict | None:
        pod = get_pod(cluster, namespace, name)
        return pod if predicate(pod) else None
    return check


def container_status(pod: JsonDict, index: int = 0) -> JsonDict:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    status: JsonDict = statuses[index]
    return status


SERVE_ENV = (
    "import http.server, os, socketserver\n"
    "body = '|'.join([open('/var/cache/modeldeploy/seed').read(), os.environ['TOKEN'],\n"
    "                 os.environ['MODE'], os.environ['POD_NAME'], os.environ['POD_NAMESPACE'],\n"
    "                 open('/etc/modeldeploy/mode').read()]).encode()\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "socketserver.TCPServer.allow_reuse_address = True\n"
    "socketserver.TCPServer((os.environ['POD_IP'], 8080), H).serve_forever()\n"
)


def test_init_container_env_sources_and_volumes_reach_the_container(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                   "data": {"token": base64.b64encode(b"s3cr3t").decode()}}, namespace)
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                   "data": {"mode": "fast"}}, namespace)
    field = [("POD_IP", "status.podIP"), ("POD_NAME", "metadata.name"),
             ("POD_NAMESPACE", "metadata.namespace")]
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server"},
        "spec": {
            "initContainers": [{
                "name": "seed", "image": cluster.test_image,
                "command": ["sh", "-c", "echo -n seeded > /var/cache/modeldeploy/seed"],
                "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/modeldeploy"}]}],
            "containers": [{
                "name": "main", "image": cluster.test_image, "command": ["python", "-c", SERVE_ENV],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                         "key": "token"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                           "key": "mode"}}}]
                + [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in field],
                "readinessProbe": {"exec": {"command": ["test", "-s",
                                                        "/var/cache/modeldeploy/seed"]},
                                   "periodSeconds": 1},
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                                 "failureThreshold": 30},
                "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/modeldeploy"},
                                 {"name": "settings", "mountPath": "/etc/modeldeploy",
                                  "readOnly": True}]}],
            "volumes": [{"name": "cache", "emptyDir": {}},
                        {"name": "settings", "configMap": {"name": "settings"}}],
        },
    }, namespace)
    pod = wait_for("server Ready", pod_when(
        cluster, namespace, "server", lambda p: bool(container_status(p).get("ready"))),
        timeout=60)
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert init["state"]["terminated"]["reason"] == "Completed"
    ip = pod["status"]["podIP"]
    # Pod addresses on a real node exist inside its namespace only.
    status, body = netns.http_get(cluster.netns, f"http://{ip}:8080/")
    assert status == 200
    assert body.decode() == f"seeded|s3cr3t|fast|server|{namespace}|fast"


def test_failing_liveness_probe_restarts_the_container(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unhealthy"},
        "spec": {"containers": [{
            "name": "main", "image": cluster.test_image,
            "command": ["python", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "livenessProbe": {"httpGet": {"path": "/no-such-health", "port": 8080},
                              "periodSeconds": 1, "failureThreshold": 2},
        }]},
    }, namespace)
    pod = wait_for("a liveness restart", pod_when(
        cluster, namespace, "unhealthy",
        lambda p: container_status(p).get("restartCount", 0) >= 1), timeout=60)
    assert "terminated" in container_status(pod)["lastState"]


def test_memory_limit_is_enforced_and_reported_as_oom_killed(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hungry"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": cluster.test_image,
            "command": ["python", "-c", "import time; x = bytearray(400 * 2**20); time.sleep(5)"],
            "resources": {"limits": {"memory": "64Mi"}}}]},
    }, namespace)
    pod = wait_for("hungry Failed", pod_when(
        cluster, namespace, "hungry", lambda p: p.get("status", {}).get("phase") == "Failed"),
        timeout=60)
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137


GRACEFUL = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    time.sleep(1); open('/out/terminated', 'w').write('drained'); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "while True: time.sleep(0.1)\n"
)


def test_delete_sends_sigterm_waits_for_the_process_then_removes_the_pod(
        cluster: ClusterHandle, namespace: str, tmp_path_factory: Any) -> None:
    out = tmp_path_factory.mktemp("graceful")
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "graceful"},
        # As root: the hostPath directory is the test's own (mode 0700), whatever user the
        # image runs as.
        "spec": {"terminationGracePeriodSeconds": 20,
                 "securityContext": {"runAsUser": 0}, "containers": [{
            "name": "main", "image": cluster.test_image, "command": ["python", "-c", GRACEFUL],
            "volumeMounts": [{"name": "out", "mountPath": "/out"}]}],
            "volumes": [{"name": "out", "hostPath": {"path": str(out),
                                                     "type": "Directory"}}]},
    }, namespace)
    wait_for("graceful Running", lambda: "running" in container_status(
        get_pod(cluster, namespace, "graceful")).get("state", {}), timeout=60)
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "graceful", "-n", namespace, "--wait=true",
                    "--timeout=60s")
    elapsed = time.monotonic() - started
    if cluster.local is not None:  # hostPath lives on the node: only readable locally
        assert (out / "terminated").read_text() == "drained"
    assert 1.0 <= elapsed < 20.0  # the handler's 1 s ran; no SIGKILL at the grace limit


def test_persistent_volume_claim_outlives_the_pod_that_wrote_it(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "cache"},
                   "spec": {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}}, namespace)

    def job_pod(name: str, script: str) -> JsonDict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": cluster.test_image, "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/modeldeploy"}]}],
                    "volumes": [{"name": "cache",
                                 "persistentVolumeClaim": {"claimName": "cache"}}]}}

    def finished(p: JsonDict) -> bool:
        return p.get("status", {}).get("phase") in ("Succeeded", "Failed")

    cluster.apply(job_pod("writer", "echo -n kept > /var/cache/modeldeploy/model"), namespace)
    writer = wait_for("writer done", pod_when(cluster, namespace, "writer", finished), timeout=60)
    assert writer["status"]["phase"] == "Succeeded"
    cluster.kubectl("delete", "pod", "writer", "-n", namespace, "--wait=true")
    script = "test $(cat /var/cache/modeldeploy/model) = kept"
    cluster.apply(job_pod("reader", script), namespace)
    reader = wait_for("reader done", pod_when(cluster, namespace, "reader", finished), timeout=60)
    assert reader["status"]["phase"] == "Succeeded"
    claim = cluster.client.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/cache")
    assert claim["status"]["phase"] == "Bound"


def test_kubectl_logs_shows_container_output(cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"containers": [{"name": "main", "image": cluster.test_image, "command": [
            "sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 60"]}]},
    }, namespace)
    wait_for("three lines logged", lambda: cluster.kubectl(
        "logs", "talker", "-n", namespace, check=False).stdout == "line 1\nline 2\nline 3\n",
        timeout=60)
    assert cluster.kubectl("logs", "talker", "-n", namespace, "--tail=1").stdout == "line 3\n"


IN_CLUSTER = (
    "import json, os, ssl, urllib.request\n"
    "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
    "token = open(sa + '/token').read()\n"
    "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
    "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
    "req = urllib.request.Request(f'https://{host}:{port}/apis/authentication.k8s.io/v1/'\n"
    "    'selfsubjectreviews', method='POST', headers={'Authorization': 'Bearer ' + token,\n"
    "    'Content-Type': 'application/json'}, data=b'{\"kind\": \"SelfSubjectReview\", '\n"
    "    b'\"apiVersion\": \"authentication.k8s.io/v1\"}')\n"
    "user = json.load(urllib.request.urlopen(req, context=ctx))['status']['userInfo']\n"
    "open('/dev/termination-log', 'w').write(user['username'] + ' ' + open(sa + '/namespace')"
    ".read())\n"
)


def test_pod_reaches_the_api_server_with_its_service_account_token(
        cluster: ClusterHandle, namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "caller"},
                   "spec": {"restartPolicy": "Never", "containers": [{
                       "name": "main", "image": cluster.test_image,
                       "command": ["python", "-c", IN_CLUSTER]}]}},
                  namespace)
    pod = wait_for("caller done", pod_when(cluster, namespace, "caller", lambda p: p.get(
        "status", {}).get("phase") in ("Succeeded", "Failed")), timeout=60)
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    assert terminated["message"] == f"system:serviceaccount:{namespace}:default {namespace}"
