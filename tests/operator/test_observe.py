"""observe: pod, Deployment, Service and runtime /status dicts -> the planner's observations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.status import ModelDeploymentStatus, RolloutState
from modeldeploy_operator.planning import observe
from modeldeploy_operator.planning.observations import FailureKind, ValidationResult

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(
    template_hash: str = "h1",
    *,
    init: list[dict[str, Any]] | None = None,
    serve: dict[str, Any] | None = None,
    ready: bool = False,
    ip: str | None = "127.0.10.2",
    uid: str = "p1",
    created: str = "2026-01-01T11:00:00Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "initContainerStatuses": init or [],
        "containerStatuses": [{"name": "serve", "restartCount": 0, **(serve or {})}],
    }
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {
            "name": f"pod-{uid}",
            "uid": uid,
            "creationTimestamp": created,
            "labels": {naming.LABEL_TEMPLATE_HASH: template_hash},
        },
        "spec": {"containers": [{"name": "serve", "ports": [{"containerPort": 8080}]}]},
        "status": status,
    }


def terminated(code: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "message": message, "reason": reason}}


def test_a_failed_fetch_init_container_is_a_fetch_failure_with_its_message() -> None:
    p = pod(init=[{"name": "fetch", "lastState": terminated(1, "s3: bucket models not found")}])
    signal = observe.pod_failure(p)
    assert signal is not None
    assert signal.kind is FailureKind.FETCH_FAILED
    assert signal.message == "s3: bucket models not found"
    assert signal.template_hash == "h1"


def test_a_serve_exit_mentioning_validation_is_a_validation_failure() -> None:
    message = "validation failed: cosine similarity 0.12 below 0.99"
    p = pod(serve={"lastState": terminated(1, message), "restartCount": 1})
    signal = observe.pod_failure(p)
    assert signal is not None and signal.kind is FailureKind.VALIDATION_FAILED
    assert signal.message == message


def test_any_other_serve_exit_with_a_message_is_a_load_failure() -> None:
    p = pod(serve={"state": terminated(1, "model.safetensors: truncated file")})
    signal = observe.pod_failure(p)
    assert signal is not None and signal.kind is FailureKind.LOAD_FAILED


@pytest.mark.parametrize(
    ("container", "word", "kind"),
    [
        ("fetch", "FetchFailed", FailureKind.FETCH_FAILED),
        ("fetch", "FetchDeadlineExceeded", FailureKind.FETCH_DEADLINE_EXCEEDED),
        ("serve", "LoadFailed", FailureKind.LOAD_FAILED),
        ("serve", "LoadDeadlineExceeded", FailureKind.LOAD_DEADLINE_EXCEEDED),
        ("serve", "WarmupDeadlineExceeded", FailureKind.WARMUP_DEADLINE_EXCEEDED),
        ("serve", "ValidationDeadlineExceeded", FailureKind.VALIDATION_DEADLINE_EXCEEDED),
        ("serve", "ValidationFailed", FailureKind.VALIDATION_FAILED),
    ],
)
def test_the_runtimes_reason_word_picks_the_failure_kind_and_is_cut_from_the_message(
    container: str, word: str, kind: FailureKind
) -> None:
    text = "the stage did not finish; raise spec.stageDeadlineSeconds or check the source"
    state = {"name": container, "lastState": terminated(1, f"{word}: {text}"), "restartCount": 1}
    p = pod(init=[state]) if container == "fetch" else pod(serve=state)
    signal = observe.pod_failure(p)
    assert signal is not None
    assert (signal.kind, signal.message) == (kind, text)


def test_an_unknown_reason_word_from_serve_is_a_load_failure_keeping_the_whole_message() -> None:
    # "validation" in the text must not make a config error a validation failure.
    message = "ConfigInvalid: invalid runtime config: validation.input: field required"
    p = pod(serve={"lastState": terminated(1, message), "restartCount": 1})
    signal = observe.pod_failure(p)
    assert signal is not None
    assert (signal.kind, signal.message) == (FailureKind.LOAD_FAILED, message)


def test_oom_killed_wins_over_the_exit_code() -> None:
    p = pod(serve={"lastState": terminated(137, "", reason="OOMKilled")})
    signal = observe.pod_failure(p)
    assert signal is not None and signal.kind is FailureKind.OOM_KILLED


def test_crash_loop_back_off_without_a_message_is_a_crash_loop() -> None:
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
    p = pod(serve={"state": waiting, "lastState": terminated(2), "restartCount": 4})
    signal = observe.pod_failure(p)
    assert signal is not None and signal.kind is FailureKind.CRASH_LOOP


def test_a_loading_pod_and_a_clean_exit_are_not_failures() -> None:
    assert observe.pod_failure(pod(serve={"state": {"running": {}}})) is None
    assert observe.pod_failure(pod(serve={"lastState": terminated(0)})) is None
    # One restart without a reason may be the node's doing: not yet a crash loop.
    assert observe.pod_failure(pod(serve={"lastState": terminated(2), "restartCount": 1})) is None


def test_deployment_view_reads_counts_and_distrusts_an_unobserved_generation() -> None:
    dep = {
        "metadata": {"name": "md", "generation": 3, "labels": {}},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {
                    "labels": {naming.LABEL_TEMPLATE_HASH: "h2", naming.LABEL_VERSION: "v2"}
                }
            },
        },
        "status": {
            "observedGeneration": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        },
    }
    view = observe.deployment_view(dep)
    assert view is not None
    assert (view.template_hash, view.version, view.replicas) == ("h2", "v2", 2)
    assert view.settled is False and view.fully_ready is False
    dep["status"]["observedGeneration"] = 3
    settled = observe.deployment_view(dep)
    assert settled is not None and settled.fully_ready


def test_service_selector_hash_is_none_for_every_version_or_missing() -> None:
    pinned = {"spec": {"selector": {naming.LABEL_TEMPLATE_HASH: "h3", "x": "y"}}}
    assert observe.selector_hash(pinned) == "h3"
    assert observe.selector_hash({"spec": {"selector": {"x": "y"}}}) is None
    assert observe.selector_hash(None) is None


def test_load_seconds_map_the_runtime_status_phases() -> None:
    seconds = observe.load_seconds(
        {
            "phase": "Ready",
            "phases": {"import": 1.5, "fileIO": 0.25, "deserialize": 0.1, "warmup": 0.4},
            "timeToReadySeconds": 2.75,
        }
    )
    assert seconds is not None
    assert seconds.file_io == 0.25 and seconds.import_ == 1.5 and seconds.time_to_ready == 2.75
    assert seconds.device_transfer is None
    assert observe.load_seconds({"phase": "Loading"}) is None


def test_build_observed_folds_pods_timers_annotations_and_remembered_validations() -> None:
    md = {
        "metadata": {
            "name": "md",
            "generation": 4,
            "annotations": {"modeldeploy.dev/promote": "v2", "modeldeploy.dev/retry": "1"},
        }
    }
    status = ModelDeploymentStatus(
        rollout=RolloutState(started_at="2026-01-01T11:59:00Z", promoted_at="2026-01-01T11:59:30Z")
    )
    memory = observe.Memory()
    memory.validations[("h2", "preview")] = ValidationResult("h2", "preview", True)
    world = observe.World(
        deployments=[],
        pods=[
            pod("h2", ready=True, uid="a", created="2026-01-01T11:00:00Z"),
            pod("h2", ready=True, uid="b", created="2026-01-01T11:30:00Z"),
            pod("h1", serve={"state": terminated(1, "validation failed")}, uid="c"),
        ],
        stable_service={"spec": {"selector": {naming.LABEL_TEMPLATE_HASH: "h1"}}},
        preview_service=None,
    )
    asked: list[str] = []

    def runtime_status(p: dict[str, Any]) -> dict[str, Any]:
        asked.append(p["metadata"]["uid"])
        return {"phases": {"warmup": 0.5}, "timeToReadySeconds": 3.0}

    observed = observe.build_observed(md, status, "h2", world, memory, NOW, runtime_status)
    assert observed.generation == 4 and observed.desired_hash == "h2"
    assert observed.elapsed_seconds == 60.0 and observed.since_promotion_seconds == 30.0
    assert observed.since_abort_seconds is None
    assert observed.promote_annotation == "v2" and observed.retry_annotation == "1"
    assert observed.preview_selector is None
    failure = observed.failure("h1")
    assert failure is not None and failure.kind is FailureKind.VALIDATION_FAILED
    assert observed.validation("h2", "preview") is not None
    assert observed.load_seconds is not None and observed.load_seconds.time_to_ready == 3.0
    assert observed.now == "2026-01-01T12:00:00Z"
    # The newest ready pod is asked once; its timings are remembered.
    observe.build_observed(md, status, "h2", world, memory, NOW, runtime_status)
    assert asked == ["b"]


def test_memory_forgets_validations_when_generation_or_retry_changes() -> None:
    memory = observe.Memory()
    memory.start_epoch(1, None)
    memory.validations[("h", "preview")] = ValidationResult("h", "preview", False)
    memory.start_epoch(1, None)
    assert memory.validations
    memory.start_epoch(1, "again")
    assert not memory.validations


def test_ready_pods_need_an_ip_and_the_ready_condition() -> None:
    pods = [pod(ready=True, uid="a"), pod(ready=False, uid="b"), pod(ready=True, ip=None, uid="c")]
    assert [p["metadata"]["uid"] for p in observe.ready_pods(pods, "h1")] == ["a"]
