"""Fault scenarios: a broken version never takes the traffic and the service falls back.

Given v1 Available with traffic flowing through the stable Service, each scenario applies
one broken version (e2e/modeldeploy_e2e/faults.py) and expects: zero failed requests,
phase RolledBack, currentVersion = LKG = v1, targetVersion = the broken one, a Degraded
condition naming the reason and the runtime's message, and an Event saying so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import faults, workload
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "minilm"
BLUE_GREEN = {
    "type": "BlueGreen",
    "blueGreen": {"scaleDownDelaySeconds": 10, "previewService": True},
}


def rolled_back(status: dict[str, Any]) -> bool:
    return status.get("phase") == "RolledBack"


def break_and_expect_flip_back(
    cluster: Cluster, ns: str, s3: MinioServer,
    broken: dict[str, Any], reason: str, strategy: dict[str, Any] | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """v1 Available, then `broken` applied under traffic; assert the flip back to v1."""
    options: dict[str, Any] = {"replicas": 1}
    if strategy is not None:
        options["strategy"] = strategy
    cluster.apply(faults.good(NAME, ns, s3.endpoint, **options))
    workload.wait_for_status(cluster.client, ns, NAME, workload.available_at("v1"), 300,
                             "v1 Available")
    target = broken["spec"]["model"]["version"]
    with workload.inference_traffic(cluster.client, ns, NAME, netns=cluster.netns) as traffic:
        cluster.apply(broken)
        status = workload.wait_for_status(cluster.client, ns, NAME, rolled_back, timeout,
                                          f"{target} rolled back")
        # Keep sending a little longer: the old pods must still answer after the flip.
        workload.wait_until(lambda: workload.served_versions(
            cluster.client, ns, NAME, "minilm", netns=cluster.netns) == {"v1"}, 60,
            "v1 serving after the flip")
    report = traffic.report
    print(f"traffic during the fault ({reason}): {report.summary()}")
    assert report.failures == 0, report.summary()
    assert report.successes > 5, report.summary()
    assert set(report.by_answer) == {"v1"}, "the broken version took traffic"
    assert status["currentVersion"] == "v1"
    assert status["lastKnownGoodVersion"] == "v1"
    assert status["targetVersion"] == target
    degraded = faults.condition(status, "Degraded")
    assert degraded.get("status") == "True", degraded
    assert degraded.get("reason") == reason, degraded
    assert target in degraded.get("message", ""), degraded
    history = [(h["version"], h["outcome"]) for h in status["history"]]
    assert history[-1] == (target, "RolledBack")
    # Posted before the status that records the failure; a bounded wait still covers the
    # API server's own delay in listing what it just stored.
    def flip_back_event() -> dict[str, str] | None:
        events = faults.event_reasons(cluster.client, ns, NAME)
        return events if reason in events or "RolledBack" in events else None

    workload.wait_until(flip_back_event, 30, f"a {reason} or RolledBack event")
    return status


def test_rolling_wrong_output_is_rolled_back_without_a_failed_request(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    status = break_and_expect_flip_back(
        op_cluster, md_namespace, minilm_s3,
        faults.wrong_expected_output(NAME, md_namespace, minilm_s3.endpoint, replicas=1),
        "ValidationFailed")
    assert "cosine" in faults.condition(status, "Degraded")["message"].lower()
    assert workload.children(op_cluster.client, md_namespace, NAME)["deployments"] == [NAME]
    # What a user sees; MODELDEPLOY_BAD_VERSION_EXAMPLE=path keeps it for the README.
    shown = "\n".join(
        f"$ kubectl {' '.join(args)}\n" + op_cluster.kubectl(*args, "-n", md_namespace).stdout
        for args in (("get", "md"), ("describe", "md", NAME)))
    print(shown)
    assert "RolledBack" in shown and "ValidationFailed" in shown
    if target := os.environ.get("MODELDEPLOY_BAD_VERSION_EXAMPLE"):
        Path(target).write_text(faults.elide_number_runs(shown.replace(md_namespace, "demo")))


def test_blue_green_wrong_output_never_moves_the_stable_service(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    broken = faults.wrong_expected_output(NAME, md_namespace, minilm_s3.endpoint, replicas=1,
                                          strategy=BLUE_GREEN)
    break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken,
                               "ValidationFailed", strategy=BLUE_GREEN)


def test_sha256_mismatch_fails_the_fetch_and_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    status = break_and_expect_flip_back(
        op_cluster, md_namespace, minilm_s3,
        faults.sha256_mismatch(NAME, md_namespace, minilm_s3.endpoint, replicas=1),
        "FetchFailed")
    assert "sha256" in faults.condition(status, "Degraded")["message"].lower()


def test_truncated_weight_file_in_s3_fails_the_load_and_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, tmp_path: Path,
) -> None:
    prefix = faults.upload_truncated(minilm_s3, tmp_path)
    break_and_expect_flip_back(
        op_cluster, md_namespace, minilm_s3,
        faults.truncated_weights(NAME, md_namespace, minilm_s3.endpoint, prefix, replicas=1),
        "LoadFailed")


def test_s3_unreachable_fails_the_fetch_and_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    break_and_expect_flip_back(
        op_cluster, md_namespace, minilm_s3,
        faults.s3_unreachable(NAME, md_namespace, replicas=1), "FetchFailed")


def test_first_deploy_that_fails_is_failed_with_nothing_to_flip_to(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    op_cluster.apply(faults.sha256_mismatch(NAME, md_namespace, minilm_s3.endpoint, replicas=1))
    status = workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, lambda s: s.get("phase") == "Failed", 300,
        "the first deploy Failed")
    assert not status.get("currentVersion")
    assert not status.get("lastKnownGoodVersion")
    assert status["targetVersion"] == "bad-checksum"
    degraded = faults.condition(status, "Degraded")
    assert degraded.get("status") == "True", degraded
    assert "sha256" in degraded.get("message", "").lower(), degraded


def test_progress_deadline_on_a_pod_that_never_gets_ready_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    broken = faults.never_ready(NAME, md_namespace, minilm_s3.endpoint, delay_seconds=300,
                                deadline_seconds=30, replicas=1)
    break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken,
                               "ProgressDeadlineExceeded")


def test_a_load_overrunning_its_stage_deadline_flips_back_long_before_the_progress_deadline(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    broken = faults.load_overruns(NAME, md_namespace, minilm_s3.endpoint, deadline_seconds=15,
                                  replicas=1)
    # 120 s, against the 600 s progress deadline: only the stage deadline can end it in time.
    status = break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken,
                                        "LoadDeadlineExceeded", timeout=120)
    message = faults.condition(status, "Degraded")["message"]
    assert "the load stage did not finish within stageDeadlineSeconds.load=15s" in message


def test_a_fetch_from_an_s3_that_never_answers_overruns_its_stage_deadline_and_flips_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    with faults.silent_endpoint(op_cluster.netns, op_cluster.node_ip) as endpoint:
        broken = faults.fetch_overruns(NAME, md_namespace, endpoint, deadline_seconds=10,
                                       replicas=1)
        status = break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken,
                                            "FetchDeadlineExceeded", timeout=120)
    message = faults.condition(status, "Degraded")["message"]
    assert "the fetch stage did not finish within stageDeadlineSeconds.fetch=10s" in message


def test_model_too_large_for_its_memory_limit_is_oom_killed_and_flipped_back(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    broken = faults.over_memory_limit(NAME, md_namespace, minilm_s3.endpoint, replicas=1)
    break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken, "OOMKilled")


def pod_names(cluster: Cluster, ns: str) -> list[str]:
    return workload.children(cluster.client, ns, NAME)["pods"]


def test_failed_version_is_not_retried_until_asked_and_reverting_needs_no_new_pods(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    broken = faults.wrong_expected_output(NAME, md_namespace, minilm_s3.endpoint, replicas=1)
    break_and_expect_flip_back(op_cluster, md_namespace, minilm_s3, broken, "ValidationFailed")
    client = op_cluster.client

    def settled() -> list[str] | None:
        pods = pod_names(op_cluster, md_namespace)
        return pods if len(pods) == 1 else None

    lkg_pods = workload.wait_until(settled, 60, "only the v1 pod left")
    attempts = len(workload.status_of(client, md_namespace, NAME)["history"])

    # Re-applying the same failed spec (and poking the object) starts nothing.
    op_cluster.apply(broken)
    op_cluster.kubectl("annotate", "md", NAME, "-n", md_namespace, "example.com/poke=1")
    for _ in range(15):
        status = workload.status_of(client, md_namespace, NAME)
        assert status["phase"] == "RolledBack", status
        assert pod_names(op_cluster, md_namespace) == lkg_pods
        time.sleep(1)
    assert len(status["history"]) == attempts
    assert faults.condition(status, "Degraded").get("status") == "True"

    # The retry annotation does retry it: a new pod of the failed version, then back.
    op_cluster.kubectl("annotate", "md", NAME, "-n", md_namespace, "modeldeploy.dev/retry=1")
    workload.wait_until(lambda: set(pod_names(op_cluster, md_namespace)) - set(lkg_pods), 60,
                        "a retry pod")
    status = workload.wait_for_status(
        client, md_namespace, NAME,
        lambda s: rolled_back(s) and len(s.get("history", [])) > attempts, 300,
        "the retried version rolled back again")
    assert status["currentVersion"] == "v1"

    # Reverting the spec to the last-known-good version: Available, the same v1 pod.
    lkg_pods = workload.wait_until(settled, 60, "only the v1 pod left after the retry")
    op_cluster.apply(faults.good(NAME, md_namespace, minilm_s3.endpoint, replicas=1))
    status = workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v1"),
                                      60, "Available at v1 after the revert")
    assert pod_names(op_cluster, md_namespace) == lkg_pods
    assert faults.condition(status, "Degraded").get("status") != "True"


def template_version(cluster: Cluster, ns: str) -> str:
    dep = cluster.client.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{NAME}")
    return str(dep["spec"]["template"]["metadata"]["labels"].get("modeldeploy.dev/version"))


def test_operator_killed_during_the_flip_itself_finishes_it_after_restart(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    """Hold the flip between its two writes with an admission policy, kill the operator
    there, restart it: the flip completes, the failed version is not rolled out again."""
    client, ns = op_cluster.client, md_namespace
    op_cluster.apply(faults.good(NAME, ns, minilm_s3.endpoint, replicas=1))
    workload.wait_for_status(client, ns, NAME, workload.available_at("v1"), 300, "v1 Available")
    broken = faults.wrong_expected_output(NAME, ns, minilm_s3.endpoint, replicas=1)
    with faults.flip_held(op_cluster, ns, back_to="v1"), \
            workload.inference_traffic(op_cluster.client, ns, NAME,
                                       netns=op_cluster.netns) as traffic:
        op_cluster.apply(broken)
        # The failure is recorded (first write) while the Deployment's template cannot go
        # back to v1 (second write): the operator is stopped exactly between the two.
        held = workload.wait_for_status(
            client, ns, NAME,
            lambda s: "wrong-output" in s.get("rollout", {}).get("failedVersions", [])
            and faults.condition(s, "Degraded").get("reason") == "ReconcileFailed",
            300, "the failure recorded, the refused flip reported")
        # What a user sees meanwhile: the flip back was refused, and by what.
        assert "e2e: the flip back to v1 is held here" in faults.condition(
            held, "Degraded")["message"]
        time.sleep(3)  # a few refused flip attempts
        assert template_version(op_cluster, ns) == "wrong-output"
        operator_proc.kill()
        faults.release_flip(op_cluster, ns)
        operator_proc.start()
        workload.wait_until(lambda: template_version(op_cluster, ns) == "v1", 120,
                            "the flip finished after the restart")
        status = workload.wait_for_status(client, ns, NAME, rolled_back, 60, "RolledBack")
        workload.wait_until(lambda: workload.served_versions(client, ns, NAME, "minilm",
                                                             netns=op_cluster.netns)
                            == {"v1"}, 60, "v1 serving")
    assert traffic.report.failures == 0, traffic.report.summary()
    assert status["currentVersion"] == "v1" and status["targetVersion"] == "wrong-output"
    assert faults.condition(status, "Degraded").get("reason") == "ValidationFailed"
    attempts = [h for h in status["history"] if h["version"] == "wrong-output"]
    assert [h["outcome"] for h in attempts] == ["RolledBack"], status["history"]
    assert workload.children(client, ns, NAME)["deployments"] == [NAME]
    # The restarted operator did not roll the failed version out again.
    assert template_version(op_cluster, ns) == "v1"


def test_spec_change_during_a_failing_rollout_goes_to_the_new_version(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str, operator_proc: OperatorProcess
) -> None:
    client = op_cluster.client
    op_cluster.apply(faults.good(NAME, md_namespace, minilm_s3.endpoint, replicas=1))
    workload.wait_for_status(client, md_namespace, NAME, workload.available_at("v1"), 300,
                             "v1 Available")
    stuck = faults.never_ready(NAME, md_namespace, minilm_s3.endpoint, delay_seconds=300,
                               deadline_seconds=120, replicas=1)
    with workload.inference_traffic(op_cluster.client, md_namespace, NAME,
                                    netns=op_cluster.netns) as traffic:
        op_cluster.apply(stuck)
        workload.wait_for_status(
            client, md_namespace, NAME,
            lambda s: s.get("targetVersion") == "slow" and s.get("phase") == "Progressing",
            60, "the stuck rollout under way")
        op_cluster.apply(faults.good(NAME, md_namespace, minilm_s3.endpoint, version="v3",
                                     replicas=1))
        status = workload.wait_for_status(client, md_namespace, NAME,
                                          workload.available_at("v3"), 300, "v3 Available")
    assert traffic.report.failures == 0, traffic.report.summary()
    assert status["lastKnownGoodVersion"] == "v3"
    assert workload.served_versions(client, md_namespace, NAME, "minilm",
                                    netns=op_cluster.netns) == {"v3"}
    outcomes = {h["version"]: h["outcome"] for h in status["history"]}
    assert outcomes.get("v3") == "Promoted", status["history"]
    assert outcomes.get("slow") != "Promoted", status["history"]
