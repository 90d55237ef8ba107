"""Model storage without long-lived keys, end to end on the local cluster with no AWS.

Given MinIO whose STS trusts the kube-apiserver's service-account issuer (as IAM trusts an
EKS cluster's OIDC provider), a ServiceAccount annotated with the role ARN and a pod
identity webhook doing what EKS's does, when a ModelDeployment with no credentials Secret
names that ServiceAccount, then its pods exchange their projected token for temporary
credentials and it becomes Available. Also: a public bucket read anonymously, and a wrong
bucket reported as such.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_e2e import faults, workload
from modeldeploy_e2e.irsa import ROLE_ANNOTATION, PodIdentityWebhook, allow_issuer_discovery
from modeldeploy_e2e.oidc import minio_openid_env, role_arn
from modeldeploy_e2e.opcluster import (
    Cluster,
    fresh_namespace,
    minio_for_pods,
    operator_process,
)
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"
ACCOUNT = "model-reader"


@pytest.fixture(scope="module")
def sts_s3(op_cluster: Cluster, cluster: Any,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """MinIO trusting the API server's issuer; MiniLM in `models` (private) and `public`."""
    assert cluster.local is not None, "the IRSA scenario needs the local cluster's CA"
    allow_issuer_discovery(op_cluster.client)
    tmp = tmp_path_factory.mktemp("sts-minio")
    (tmp / "certs" / "CAs").mkdir(parents=True)
    shutil.copy(cluster.local.pki_dir / "ca.crt", tmp / "certs" / "CAs" / "cluster-ca.crt")
    issuer = op_cluster.client.endpoint.server.rstrip("/")
    server = minio_for_pods(op_cluster, tmp / "data", quiet=False, certs_dir=tmp / "certs",
                            extra_env=minio_openid_env(
                                f"{issuer}/.well-known/openid-configuration", "readwrite"))
    server.start()
    try:
        client = server.client()
        for bucket in ("models", "public"):
            workload.upload_minilm(server, ["v1"], bucket)
        client.put_bucket_policy(Bucket="public", Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:ListBucket"],
                 "Resource": ["arn:aws:s3:::public"]},
                {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                 "Resource": ["arn:aws:s3:::public/*"]}]}))
        yield server
    finally:
        server.stop()


@pytest.fixture
def ns(op_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace with no Secret at all."""
    with fresh_namespace(op_cluster, "md-irsa") as name:
        yield name


@pytest.fixture
def operator(op_cluster: Cluster, ns: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = operator_process(op_cluster, [ns], tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _keyless(ns: str, endpoint: str, bucket: str = "models", **s3: Any) -> dict[str, Any]:
    manifest = workload.minilm_manifest(NAME, ns, version="v1", endpoint=endpoint, replicas=1,
                                        bucket=bucket)
    source = manifest["spec"]["model"]["source"]["s3"]
    del source["credentialsSecret"]
    source.update(s3)
    return manifest


def _pods(op_cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = op_cluster.client.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    return items


def test_irsa_a_keyless_model_deployment_becomes_available(
    op_cluster: Cluster, cluster: Any, sts_s3: MinioServer, ns: str,
    operator: OperatorProcess, tmp_path: Path,
) -> None:
    arn = role_arn(sts_s3)
    op_cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": ACCOUNT, "namespace": ns,
                                   "annotations": {ROLE_ANNOTATION: arn}}})
    webhook = PodIdentityWebhook(op_cluster.client, cluster.local.pki_dir, tmp_path / "webhook",
                                 sts_endpoint=sts_s3.endpoint, netns=op_cluster.netns).start(ns)
    try:
        manifest = _keyless(ns, sts_s3.endpoint)
        manifest["spec"]["runtime"]["serviceAccountName"] = ACCOUNT
        op_cluster.apply(manifest)
        workload.wait_for_status(op_cluster.client, ns, NAME, workload.available_at("v1"), 300,
                                 "keyless (IRSA) deploy Available")
    finally:
        webhook.stop()
    assert webhook.mutated, "the webhook mutated no pod"
    assert op_cluster.client.get(f"/api/v1/namespaces/{ns}/secrets").get("items", []) == []
    pods = [p for p in _pods(op_cluster, ns) if p["status"].get("phase") == "Running"]
    assert pods
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == ACCOUNT
        fetch = pod["spec"]["initContainers"][0]
        env = {e["name"]: e.get("value") for e in fetch.get("env", [])}
        assert env["AWS_ROLE_ARN"] == arn
        assert env["AWS_WEB_IDENTITY_TOKEN_FILE"].endswith("/token")
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    # MinIO saw the web-identity exchange (its STS issued the credentials the fetch used).
    assert sts_s3.secret_key not in json.dumps(pods)


def test_a_public_bucket_is_read_anonymously_to_available(
    op_cluster: Cluster, sts_s3: MinioServer, ns: str, operator: OperatorProcess,
) -> None:
    op_cluster.apply(_keyless(ns, sts_s3.endpoint, bucket="public", anonymous=True))
    workload.wait_for_status(op_cluster.client, ns, NAME, workload.available_at("v1"), 300,
                             "anonymous deploy Available")


def test_a_wrong_bucket_is_reported_as_such(
    op_cluster: Cluster, sts_s3: MinioServer, ns: str, operator: OperatorProcess,
) -> None:
    # Signed (anonymous requests cannot tell a missing bucket from a private one).
    op_cluster.apply(workload.s3_secret(ns, "s3-keys", sts_s3.access_key, sts_s3.secret_key))
    op_cluster.apply(_keyless(ns, sts_s3.endpoint, bucket="no-such-bucket",
                              credentialsSecret="s3-keys"))
    status = workload.wait_for_status(
        op_cluster.client, ns, NAME, lambda s: s.get("phase") == "Failed", 300,
        "the first deploy Failed")
    message = faults.condition(status, "Degraded").get("message", "")
    assert "NoSuchBucket" in message and "'no-such-bucket' does not exist" in message, status
    # The secret is in the pod env only: not in status, events, nor the operator's log.
    assert sts_s3.secret_key not in json.dumps(status)
    events = faults.event_reasons(op_cluster.client, ns, NAME)
    assert events and sts_s3.secret_key not in json.dumps(events)
    assert sts_s3.secret_key not in operator.log_path.read_text(errors="replace")
