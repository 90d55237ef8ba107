"""Fixtures for e2e tests: a session-wide cluster and a fresh namespace per test.

`cluster` uses $KUBECONFIG when set; otherwise it starts the local cluster on the real
node (`make cluster-up` does the same) and stops it after the session if it started it and no other
test session still uses it, unless MODELDEPLOY_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from modeldeploy_e2e.harness import ClusterHandle, connect


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    handle = connect()
    yield handle
    if os.environ.get("MODELDEPLOY_KEEP_CLUSTER") == "1":
        handle.started_here = False  # still unregister, never stop
    handle.release()


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    name = cluster.create_namespace()
    yield name
    cluster.delete_namespace(name)
