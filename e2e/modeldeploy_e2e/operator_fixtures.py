"""pytest fixtures for the operator scenarios: a cluster, MinIO with MiniLM, the operator.

Loaded by e2e/tests/test_operator_*.py (`pytest_plugins`). The cluster is e2e/conftest.py's
`cluster`: the one `KUBECONFIG` names, else the local cluster. Fixture names are prefixed
(`md_namespace`, `operator_proc`) so they never shadow the harness's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy_e2e import workload
from modeldeploy_e2e.harness import ClusterHandle
from modeldeploy_e2e.opcluster import (
    Cluster,
    fresh_namespace,
    minio_for_pods,
    operator_cluster,
    operator_process,
    with_crds,
)
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

VERSIONS = ("v1", "v2", "v3")


@pytest.fixture(scope="session")
def op_cluster(cluster: ClusterHandle) -> Cluster:
    """The cluster under test (e2e/conftest.py's `cluster`), with the CRD installed."""
    return with_crds(operator_cluster(cluster))


@pytest.fixture(scope="session")
def minilm_s3(op_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[MinioServer]:
    """MinIO with the packaged MiniLM weights under models/minilm/{v1,v2,v3}/."""
    server = minio_for_pods(op_cluster, tmp_path_factory.mktemp("minio") / "data")
    server.start()
    try:
        workload.upload_minilm(server, VERSIONS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def md_namespace(op_cluster: Cluster, minilm_s3: MinioServer) -> Iterator[str]:
    """A fresh namespace holding the S3 credentials Secret; deleted afterwards."""
    with fresh_namespace(op_cluster, "md-e2e") as name:
        op_cluster.apply(
            workload.s3_secret(name, workload.SECRET, minilm_s3.access_key, minilm_s3.secret_key)
        )
        yield name


@pytest.fixture
def operator_proc(
    op_cluster: Cluster, md_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator, watching the test's namespace; its log is kept in tmp_path."""
    process = operator_process(op_cluster, [md_namespace], tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
