"""Broken model versions for the fault scenarios, and the status/event reads they assert.

Each builder returns a MiniLM manifest (workload.minilm_manifest) that fails in one
specific way, so a scenario reads "given v1 Available, apply this broken version, expect
that reason". Weights always come from the installed MiniLM package; a broken copy is
uploaded to MinIO under its own prefix, never over the good versions.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modeldeploy_e2e import workload
from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.loopback import LOOPBACK
from modeldeploy_e2e.netns import listen
from modeldeploy_e2e.s3 import MinioServer, upload_directory

JsonDict = dict[str, Any]
# The prefix of a known-good copy in MinIO (operator_fixtures uploads v1..v3).
GOOD_PREFIX = workload.minilm_prefix("v2")


def _point_at(manifest: JsonDict, prefix: str) -> JsonDict:
    manifest["spec"]["model"]["source"]["s3"]["prefix"] = prefix
    return manifest


def _on_good_weights(name: str, namespace: str, endpoint: str, version: str,
                     **options: Any) -> JsonDict:
    """A MiniLM manifest for `version` reading the known-good weights (GOOD_PREFIX)."""
    return _point_at(workload.minilm_manifest(
        name, namespace, version=version, endpoint=endpoint, **options), GOOD_PREFIX)


def good(name: str, namespace: str, endpoint: str, version: str = "v1",
         **options: Any) -> JsonDict:
    """A version that loads and validates: the baseline every fault falls back to."""
    return workload.minilm_manifest(name, namespace, version=version, endpoint=endpoint,
                                    **options)


def wrong_expected_output(name: str, namespace: str, endpoint: str,
                          version: str = "wrong-output", **options: Any) -> JsonDict:
    """Good weights, but the expected embedding is the negated one: cosine -1 < 0.99."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    expected = manifest["spec"]["validation"]["expected"]
    expected["embedding"] = [-x for x in expected["embedding"]]
    return manifest


def sha256_mismatch(name: str, namespace: str, endpoint: str,
                    version: str = "bad-checksum", **options: Any) -> JsonDict:
    """Good weights, but the manifest claims another sha256 for model.safetensors."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    manifest["spec"]["model"]["sha256"] = {"model.safetensors": "0" * 64}
    return manifest


def upload_truncated(server: MinioServer, scratch: Path, prefix: str = "minilm/truncated/") -> str:
    """Upload MiniLM with model.safetensors cut to half its size; return the prefix."""
    copy = scratch / "truncated"
    shutil.copytree(workload.minilm_dir(), copy, dirs_exist_ok=True)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    upload_directory(server, workload.BUCKET, prefix.rstrip("/"), copy)
    return prefix


def truncated_weights(name: str, namespace: str, endpoint: str, prefix: str,
                      version: str = "truncated", **options: Any) -> JsonDict:
    """A version whose weight file in S3 is cut short (see upload_truncated)."""
    return _point_at(workload.minilm_manifest(
        name, namespace, version=version, endpoint=endpoint, **options), prefix)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def s3_unreachable(name: str, namespace: str, version: str = "no-s3",
                   **options: Any) -> JsonDict:
    """A version whose S3 endpoint is 127.0.0.1 on a closed port."""
    return _on_good_weights(name, namespace, f"http://127.0.0.1:{closed_port()}", version,
                            **options)


@contextmanager
def silent_endpoint(netns: str | None = None, host: str | None = None) -> Iterator[str]:
    """An S3 endpoint that accepts connections and never answers: on loopback, or on
    `host` inside the real node's namespace `netns` (where its pods reach it)."""
    host = host or LOOPBACK
    with listen(netns, (host, 0)) as silent:
        yield f"http://{host}:{silent.getsockname()[1]}"


def _with_env(manifest: JsonDict, name: str, value: str) -> JsonDict:
    runtime = manifest["spec"]["runtime"]
    runtime["env"] = [*runtime.get("env", []), {"name": name, "value": value}]
    return manifest


def fetch_overruns(name: str, namespace: str, endpoint: str, deadline_seconds: int,
                   version: str = "hung-fetch", **options: Any) -> JsonDict:
    """A version fetched from `endpoint` (see silent_endpoint) with a fetch stage deadline."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    manifest["spec"]["stageDeadlineSeconds"] = {"fetch": deadline_seconds}
    return manifest


def load_overruns(name: str, namespace: str, endpoint: str, deadline_seconds: int,
                  version: str = "hung-load", **options: Any) -> JsonDict:
    """A version whose load hangs (the load-delay knob) past its load stage deadline; the
    progress deadline stays at its 600 s default, so only the stage deadline can end it soon."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    manifest["spec"]["stageDeadlineSeconds"] = {"load": deadline_seconds}
    return _with_env(manifest, "MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS", "3600")


def wrong_after_ready(name: str, namespace: str, endpoint: str, after_seconds: int,
                      version: str = "drifts", **options: Any) -> JsonDict:
    """Good weights that pass the pod's own and the preview check, then answer wrong."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    return _with_env(manifest, "MODELDEPLOY_DEBUG_WRONG_AFTER_READY_SECONDS", str(after_seconds))


def never_ready(name: str, namespace: str, endpoint: str, delay_seconds: int,
                deadline_seconds: int, version: str = "slow", **options: Any) -> JsonDict:
    """A version whose load takes longer than progressDeadlineSeconds."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    manifest["spec"]["progressDeadlineSeconds"] = deadline_seconds
    return _with_env(manifest, "MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS", str(delay_seconds))


def over_memory_limit(name: str, namespace: str, endpoint: str, memory: str = "128Mi",
                      version: str = "too-big", **options: Any) -> JsonDict:
    """A version whose memory limit is far below what loading MiniLM with torch needs."""
    manifest = _on_good_weights(name, namespace, endpoint, version, **options)
    manifest["spec"]["runtime"]["resources"] = {
        "requests": {"cpu": "100m", "memory": memory}, "limits": {"memory": memory}}
    return manifest


# -- holding the operator between two writes ----------------------------------------------


def _hold_name(namespace: str) -> str:
    return f"e2e-hold-flip-{namespace}"


def _label(obj: str) -> str:
    return f"{obj}.spec.template.metadata.labels"


def hold_flip_policy(namespace: str, back_to: str) -> tuple[JsonDict, JsonDict]:
    """A ValidatingAdmissionPolicy and binding refusing, in `namespace`, any Deployment
    update that moves a pod template back to version `back_to` from another version."""
    key = "'modeldeploy.dev/version'"
    moves_back = (
        f"{key} in {_label('object')} && {key} in {_label('oldObject')} && "
        f"{_label('object')}[{key}] == '{back_to}' && {_label('oldObject')}[{key}] != '{back_to}'"
    )
    name = _hold_name(namespace)
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                "resources": ["deployments"]}]},
            "validations": [{"expression": f"!({moves_back})",
                             "message": f"e2e: the flip back to {back_to} is held here"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    return policy, binding


def _probe_deployment(namespace: str, version: str) -> JsonDict:
    labels = {"app": "e2e-hold-probe", "modeldeploy.dev/version": version}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "e2e-hold-probe", "namespace": namespace},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "e2e-hold-probe"}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "none"}]}}},
    }


@contextmanager
def flip_held(cluster: Any, namespace: str, back_to: str) -> Iterator[None]:
    """Refuse the flip back to `back_to` until release_flip (or the block's end)."""
    for manifest in hold_flip_policy(namespace, back_to):
        cluster.apply(manifest)
    # Policies reach the admission chain a moment after they are created: wait until a
    # dry-run of exactly such an update is refused.
    cluster.apply(_probe_deployment(namespace, "other"))
    probe = json.dumps(_probe_deployment(namespace, back_to))

    def refused() -> bool:
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=probe,
                                 check=False)
        return result.returncode != 0 and "is held here" in result.stderr

    deadline = time.monotonic() + 30
    while not refused():
        if time.monotonic() > deadline:
            raise AssertionError("the hold-flip admission policy never took effect")
        time.sleep(0.5)
    cluster.kubectl("delete", "deployment", "e2e-hold-probe", "-n", namespace)
    try:
        yield
    finally:
        release_flip(cluster, namespace)


def release_flip(cluster: Any, namespace: str) -> None:
    """Remove the hold-flip policy (idempotent)."""
    name = _hold_name(namespace)
    cluster.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found")
    cluster.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found")


# -- reading what the operator said -------------------------------------------------------


def condition(status: JsonDict, kind: str) -> JsonDict:
    """One condition of a status, by type ({} when absent)."""
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), {})


def event_reasons(client: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """reason -> message of the Events about one ModelDeployment."""
    events = client.get(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment",
    ).get("items", [])
    return {str(e.get("reason")): str(e.get("message")) for e in events}


_NUMBER_LINE = re.compile(r"^\s*-?\d+(\.\d+)?(e-?\d+)?\s*$")


def elide_number_runs(text: str, keep: int = 2) -> str:
    """Shorten runs of bare-number lines (the 384-float expected embedding in `kubectl
    describe`) to their first `keep` lines and a count, so the output fits a README."""
    out: list[str] = []
    run: list[str] = []
    for line in [*text.splitlines(), ""]:
        if _NUMBER_LINE.match(line):
            run.append(line)
            continue
        out.extend(run[:keep])
        if len(run) > keep:
            indent = run[0][: len(run[0]) - len(run[0].lstrip())]
            out.append(f"{indent}... ({len(run) - keep} more numbers)")
        run = []
        out.append(line)
    return "\n".join(out[:-1]) + "\n"
