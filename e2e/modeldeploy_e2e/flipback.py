"""A failing version applied while requests flow through the Service, and the proof a user
would ask for: the operator flipped back and not one request failed meanwhile.

Shared by the scenarios that roll out a bad version under traffic (text generation; the
same shape recurs in the rollout, fault and Helm scenarios).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.traffic import Traffic
from modeldeploy_e2e.workload import wait_for_status

JsonDict = dict[str, Any]


def rolled_back(status: JsonDict) -> bool:
    """The operator has given up the target version and serves the last good one again."""
    return bool(status.get("phase") == "RolledBack")


def flip_back_under_traffic(
    client: KubeClient, namespace: str, name: str, traffic: Traffic,
    apply_failing: Callable[[], None], timeout: float, what: str, min_successes: int = 10,
) -> JsonDict:
    """Apply a failing version while `traffic` runs, wait until `name` is RolledBack, and
    assert that every request succeeded (at least `min_successes` of them, so the traffic
    really flowed; `traffic.report` has the counts). Returns the final status."""
    with traffic:
        apply_failing()
        status = wait_for_status(client, namespace, name, rolled_back, timeout, what)
    report = traffic.report
    print(f"requests during the failed rollout ({what}): {report.summary()}")
    assert report.failures == 0, report.summary()
    assert report.successes >= min_successes, report.summary()
    return status
