"""reconcile: read -> observe -> plan -> apply -> status, wired together over a fake API.

The fake stands in for the API server and the Deployment controller only (this is a unit
test of the wiring; the e2e scenarios run the same code against a real control plane).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from modeldeploy_operator.adapters.kube import PermanentKubeError
from modeldeploy_operator.adapters.store import ChildStore
from modeldeploy_operator.api import naming
from modeldeploy_operator.planning import observe
from modeldeploy_operator.reconcile import RETRY_REFUSED_SECONDS, Context, Gone, reconcile

from tests.operator.fake_kube import FakeKube

NS = "ns"


class FakeRuntime:
    def __init__(self) -> None:
        self.validated: list[str] = []
        self.passes = True
        self.revision: str | None = None

    def status(self, ip: str, port: int) -> dict[str, Any]:
        return {"phase": "Ready", "phases": {"warmup": 0.5}, "timeToReadySeconds": 2.5,
                "model": {"name": "m", "version": "v", "revision": self.revision}}

    def validate(self, ip: str, port: int, model: str, validation: Any) -> tuple[bool, str]:
        self.validated.append(ip)
        return (True, "ok") if self.passes else (False, "expected label 'POSITIVE', got 'X'")


def md_body(version: str, strategy: str = "Rolling", generation: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "m", "version": version,
                  "source": {"s3": {"bucket": "models", "prefix": f"m/{version}/"}}},
        "runtime": {"task": "text-classification"},
        "replicas": 2,
        "strategy": {"type": strategy},
        "validation": {"input": "great", "expected": {"label": "POSITIVE"}},
    }
    if strategy == "BlueGreen":
        spec["strategy"]["blueGreen"] = {"scaleDownDelaySeconds": 30}
    return {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "md", "namespace": NS, "uid": "uid-1", "generation": generation},
        "spec": spec,
    }


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def setup(md: dict[str, Any]) -> tuple[FakeKube, FakeRuntime, Context, observe.Memory, Clock]:
    api, runtime, clock = FakeKube(md), FakeRuntime(), Clock()
    ctx = Context(kube=api, runtime=runtime, clock=clock)  # type: ignore[arg-type]
    return api, runtime, ctx, observe.Memory(), clock


def settle(ctx: Context, memory: observe.Memory, times: int = 4) -> None:
    for _ in range(times):
        reconcile(ctx, NS, "md", memory)


def change_version(api: FakeKube, version: str) -> None:
    generation = api.md["metadata"]["generation"] + 1
    status = api.md.get("status")
    api.md = md_body(version, api.md["spec"]["strategy"]["type"], generation)
    api.md["status"] = status


def test_first_deploy_creates_children_and_becomes_available_once_pods_are_ready() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    outcome = reconcile(ctx, NS, "md", memory)
    assert outcome.phase in ("Progressing", "Pending")
    assert ("Deployment", "md") in api.objects and ("Service", "md") in api.objects
    assert any(k[0] == "ConfigMap" for k in api.objects)
    api.roll_out("md")
    settle(ctx, memory)
    status = api.md["status"]
    assert status["phase"] == "Available"
    assert (status["currentVersion"], status["lastKnownGoodVersion"]) == ("v1", "v1")
    assert status["ready"] == "2/2"
    assert status["loadSeconds"]["timeToReady"] == 2.5
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} == {
        "Ready", "Progressing", "Validated", "Degraded"}
    assert any(reason == "RolloutComplete" for _, reason, _ in api.events)


def test_a_settled_resource_is_not_rewritten_on_every_reconcile() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    writes = api.status_writes
    settle(ctx, memory, times=3)
    assert api.status_writes == writes


def test_rolling_upgrade_updates_the_one_deployment_and_ends_available_at_v2() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    assert api.md["status"]["phase"] == "Progressing"
    assert api.md["status"]["targetVersion"] == "v2"
    assert api.md["status"]["currentVersion"] == "v1"
    dep = api.objects[("Deployment", "md")]
    assert dep["spec"]["template"]["metadata"]["labels"][naming.LABEL_VERSION] == "v2"
    api.roll_out("md")
    settle(ctx, memory)
    status = api.md["status"]
    assert (status["phase"], status["currentVersion"], status["lastKnownGoodVersion"]) == (
        "Available", "v2", "v2")
    assert [k for k in api.objects if k[0] == "Deployment"] == [("Deployment", "md")]


def test_blue_green_switches_the_service_only_after_operator_validation() -> None:
    api, runtime, ctx, memory, clock = setup(md_body("v1", "BlueGreen"))
    reconcile(ctx, NS, "md", memory)
    (first,) = [k[1] for k in api.objects if k[0] == "Deployment"]
    api.roll_out(first)
    settle(ctx, memory)
    assert api.md["status"]["phase"] == "Available"
    v1_hash = api.objects[("Service", "md")]["spec"]["selector"][naming.LABEL_TEMPLATE_HASH]

    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    second = next(k[1] for k in api.objects if k[0] == "Deployment" and k[1] != first)
    v2_hash = second.removeprefix("md-")
    preview = api.objects[("Service", "md-preview")]["spec"]["selector"]
    assert preview[naming.LABEL_TEMPLATE_HASH] == v2_hash
    assert api.objects[("Service", "md")]["spec"]["selector"][naming.LABEL_TEMPLATE_HASH] == v1_hash

    api.roll_out(second)
    settle(ctx, memory)
    assert runtime.validated, "the operator validated the candidate itself"
    assert api.objects[("Service", "md")]["spec"]["selector"][naming.LABEL_TEMPLATE_HASH] == v2_hash
    assert api.md["status"]["currentVersion"] == "v2"
    # The old version stays for the rollback window, then scales to zero.
    assert api.objects[("Deployment", first)]["spec"]["replicas"] == 2
    clock.now += timedelta(seconds=31)
    settle(ctx, memory)
    assert api.objects[("Deployment", first)]["spec"]["replicas"] == 0


def test_blue_green_candidate_failing_operator_validation_never_gets_traffic() -> None:
    api, runtime, ctx, memory, _ = setup(md_body("v1", "BlueGreen"))
    reconcile(ctx, NS, "md", memory)
    (first,) = [k[1] for k in api.objects if k[0] == "Deployment"]
    api.roll_out(first)
    settle(ctx, memory)
    v1_hash = api.objects[("Service", "md")]["spec"]["selector"][naming.LABEL_TEMPLATE_HASH]
    runtime.passes = False
    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    second = next(k[1] for k in api.objects if k[0] == "Deployment" and k[1] != first)
    api.roll_out(second)
    settle(ctx, memory)
    status = api.md["status"]
    assert status["phase"] == "RolledBack"
    assert (status["currentVersion"], status["targetVersion"]) == ("v1", "v2")
    assert api.objects[("Service", "md")]["spec"]["selector"][naming.LABEL_TEMPLATE_HASH] == v1_hash
    assert any(t == "Warning" and r == "ValidationFailed" for t, r, _ in api.events)


def test_an_invalid_spec_is_reported_without_touching_children() -> None:
    body = md_body("v1")
    body["spec"]["replicas"] = -1
    api, _, ctx, memory, _ = setup(body)
    outcome = reconcile(ctx, NS, "md", memory)
    assert outcome.phase == "Failed"
    assert "spec.replicas" in api.md["status"]["message"]
    assert not api.objects
    assert api.events and api.events[0][1] == "InvalidSpec"


def test_a_deleted_resource_stops_its_worker() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    api.md = None  # type: ignore[assignment]
    with pytest.raises(Gone):
        reconcile(ctx, NS, "md", memory)


def test_after_a_status_change_the_next_look_comes_soon() -> None:
    _, _, ctx, memory, _ = setup(md_body("v1"))
    first = reconcile(ctx, NS, "md", memory)
    assert first.status_written
    assert first.requeue_after is not None and first.requeue_after <= 1.0


def test_a_passing_preview_validation_promotes_in_the_same_reconcile() -> None:
    api, runtime, ctx, memory, _ = setup(md_body("v1", "BlueGreen"))
    reconcile(ctx, NS, "md", memory)
    (first,) = [k[1] for k in api.objects if k[0] == "Deployment"]
    api.roll_out(first)
    settle(ctx, memory)
    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    second = next(k[1] for k in api.objects if k[0] == "Deployment" and k[1] != first)
    api.roll_out(second)
    outcome = reconcile(ctx, NS, "md", memory)
    assert runtime.validated
    selector = api.objects[("Service", "md")]["spec"]["selector"]
    assert selector[naming.LABEL_TEMPLATE_HASH] == second.removeprefix("md-")
    assert outcome.phase == "Available"


def test_a_first_status_equal_to_the_defaults_is_still_written() -> None:
    body = md_body("v1")
    body["spec"]["replicas"] = 0
    api, _, ctx, memory, _ = setup(body)
    reconcile(ctx, NS, "md", memory)
    status = api.md["status"]
    assert status["phase"] == "Pending"
    assert status["ready"] == "0/0" and status["replicas"] == 0


def _fail_pods(api: FakeKube, version: str, message: str) -> None:
    for (kind, _), obj in api.objects.items():
        if kind == "Pod" and obj["metadata"]["labels"].get(naming.LABEL_VERSION) == version:
            obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            obj["status"]["containerStatuses"] = [{
                "name": "serve", "restartCount": 1,
                "lastState": {"terminated": {"exitCode": 1, "message": message}},
            }]


class Interrupted(Exception):
    pass


def _rolling_v2_failing() -> tuple[FakeKube, Context, observe.Memory]:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    _fail_pods(api, "v2", "ValidationFailed: validation failed: expected label 'POSITIVE'")
    return api, ctx, memory


def _template_version(api: FakeKube) -> str:
    labels = api.objects[("Deployment", "md")]["spec"]["template"]["metadata"]["labels"]
    return str(labels[naming.LABEL_VERSION])


def test_a_crash_between_recording_a_failure_and_the_flip_resumes_the_flip() -> None:
    api, ctx, memory = _rolling_v2_failing()
    real_apply = api.apply

    def crash_on_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] == "Deployment":
            raise Interrupted("operator killed mid-flip")
        return real_apply(manifest)

    api.apply = crash_on_deployment  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        reconcile(ctx, NS, "md", memory)
    # The failure was recorded before the flip's first write.
    assert api.md["status"]["phase"] == "RolledBack"
    assert _template_version(api) == "v2"

    api.apply = real_apply  # type: ignore[method-assign]
    settle(ctx, observe.Memory())  # a restarted operator remembers nothing in memory
    assert _template_version(api) == "v1"
    status = api.md["status"]
    assert (status["phase"], status["currentVersion"], status["targetVersion"]) == (
        "RolledBack", "v1", "v2")
    assert [h["outcome"] for h in status["history"] if h["version"] == "v2"] == ["RolledBack"]


def test_a_failed_status_write_leaves_the_children_untouched() -> None:
    api, ctx, memory = _rolling_v2_failing()

    def refuse(namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise Interrupted("status write refused")

    real_patch = api.patch_status
    api.patch_status = refuse  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        reconcile(ctx, NS, "md", memory)
    # Nothing flipped that the status does not remember: the next pass does it all.
    assert _template_version(api) == "v2"
    api.patch_status = real_patch  # type: ignore[method-assign]
    settle(ctx, memory)
    assert _template_version(api) == "v1"
    assert api.md["status"]["phase"] == "RolledBack"


def test_the_event_of_a_recorded_failure_is_posted_before_the_status_that_records_it() -> None:
    # Whoever sees RolledBack in the status finds the Warning event already; a crash between
    # the two posts it again on restart instead of never.
    api, ctx, memory = _rolling_v2_failing()
    api.calls.clear()
    reconcile(ctx, NS, "md", memory)
    assert api.md["status"]["phase"] == "RolledBack"
    first_status = api.calls.index(("patch_status", "md"))
    warnings = [i for i, call in enumerate(api.calls)
                if call[0] == "post_event" and call[1] == "ValidationFailed"]
    assert warnings and warnings[0] < first_status


def test_a_crash_after_the_event_and_before_the_status_posts_the_event_again() -> None:
    api, ctx, memory = _rolling_v2_failing()

    def refuse(namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise Interrupted("operator killed before the status write")

    real_patch = api.patch_status
    api.patch_status = refuse  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        reconcile(ctx, NS, "md", memory)
    api.patch_status = real_patch  # type: ignore[method-assign]
    settle(ctx, observe.Memory())
    assert api.md["status"]["phase"] == "RolledBack"
    assert [r for _, r, _ in api.events].count("ValidationFailed") >= 1


def test_a_flip_back_whose_recorded_template_is_gone_is_a_condition_not_a_crash_loop() -> None:
    api, ctx, memory = _rolling_v2_failing()
    for key in [k for k in api.objects if k[0] == "ConfigMap"]:
        del api.objects[key]  # e.g. deleted by hand: the v1 template cannot be rebuilt
    outcome = reconcile(ctx, NS, "md", memory)
    status = api.md["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "TemplateUnavailable")
    assert "spec.model.version" in degraded["message"]
    assert status["phase"] == "Degraded" and outcome.phase == "Degraded"
    assert ("Warning", "TemplateUnavailable") in [(t, r) for t, r, _ in api.events]
    writes = api.status_writes
    reconcile(ctx, NS, "md", memory)  # the same again: no new event, no new write storm
    assert [r for _, r, _ in api.events].count("TemplateUnavailable") == 1
    assert api.status_writes <= writes + 1
    assert "v2" in status["rollout"]["failedVersions"]  # the recorded failure survives


def _watched(api: FakeKube) -> ChildStore:
    """A store fed like the watch streams feed it: with everything the fake API holds."""
    store = ChildStore()
    if api.md is not None:
        store.observe("ModelDeployment", api.md)
    for (kind, _), body in api.objects.items():
        store.observe(kind, {**body, "metadata": {**body["metadata"], "namespace": NS}})
    return store


def test_a_pass_from_the_store_reads_nothing_from_the_api_and_a_settled_one_writes_nothing(
) -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    ctx.store = _watched(api)
    api.calls.clear()
    outcome = reconcile(ctx, NS, "md", memory, fresh=False)
    assert api.calls == []
    assert outcome.result == "unchanged" and outcome.requeue_after is None


def test_a_fresh_pass_lists_the_children_and_refreshes_the_store() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    ctx.store = ChildStore()
    reconcile(ctx, NS, "md", memory, fresh=True)
    assert {("list", "Deployment"), ("list", "Pod"), ("list", "Service")} <= set(api.calls)
    api.roll_out("md")
    reconcile(ctx, NS, "md", memory, fresh=True)
    assert ctx.store.list("Pod", NS, {naming.LABEL_MODEL_DEPLOYMENT: "md"})


def test_a_missed_watch_event_is_healed_by_the_next_fresh_pass() -> None:
    api, _, ctx, memory, _ = setup(md_body("v1"))
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    ctx.store = _watched(api)
    # Someone points the Service elsewhere and the watch event is lost.
    api.objects[("Service", "md")]["spec"]["selector"] = {"app": "hijacked"}
    reconcile(ctx, NS, "md", memory, fresh=False)
    assert api.objects[("Service", "md")]["spec"]["selector"] == {"app": "hijacked"}
    reconcile(ctx, NS, "md", memory, fresh=True)
    assert api.objects[("Service", "md")]["spec"]["selector"] == {
        naming.LABEL_MODEL_DEPLOYMENT: "md"}


def test_a_flip_back_refused_by_the_api_server_is_reported_and_tried_again_later() -> None:
    api, ctx, memory = _rolling_v2_failing()
    api.refuse[("Deployment", "md")] = PermanentKubeError(
        "apply Deployment ns/md: HTTP 422 denied by admission policy 'hold'", 422)
    outcome = reconcile(ctx, NS, "md", memory)
    status = api.md["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileFailed")
    assert "admission policy 'hold'" in degraded["message"]
    assert "v2" in status["rollout"]["failedVersions"]  # recorded before the refused flip
    assert outcome.requeue_after == RETRY_REFUSED_SECONDS
    settle(ctx, memory)  # the refusal lifted: the flip completes
    assert _template_version(api) == "v1"
    assert api.md["status"]["phase"] == "RolledBack"


def test_the_hub_commit_a_ready_pod_serves_is_recorded_in_status() -> None:
    api, runtime, ctx, memory, _ = setup(md_body("v1"))
    runtime.revision = "0123abc"
    reconcile(ctx, NS, "md", memory)
    api.roll_out("md")
    settle(ctx, memory)
    assert api.md["status"]["modelRevision"] == "0123abc"
    change_version(api, "v2")
    reconcile(ctx, NS, "md", memory)
    # Another version: the old commit no longer describes what is being rolled out.
    assert "modelRevision" not in api.md["status"]


def test_a_first_deploy_with_prefetch_onto_a_node_pool_lists_the_nodes_and_prefetches() -> None:
    md = md_body("v1")
    md["spec"]["cache"] = {"volume": "hostPath", "hostPath": "/models", "prefetch": True}
    md["spec"]["pod"] = {"nodeSelector": {"pool": "gpu"}}
    api, _, ctx, memory, _ = setup(md)
    for name, pool in (("gpu-1", "gpu"), ("cpu-1", "cpu")):
        api.objects[("Node", name)] = {"kind": "Node", "metadata": {
            "name": name, "labels": {"pool": pool}}}
    reconcile(ctx, NS, "md", memory)
    assert ("list", "Node") in api.calls
    prefetch_pods = [o for (kind, _), o in api.objects.items() if kind == "Pod"]
    assert [p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"] for p in prefetch_pods] == [
                ["gpu-1"]]
    assert ("Deployment", "md") not in api.objects
    assert api.md["status"]["message"].startswith("prefetching version v1 onto 1 node(s)")
    for (kind, _), pod in api.objects.items():
        if kind == "Pod":
            pod["status"] = {"phase": "Succeeded"}
    reconcile(ctx, NS, "md", memory)
    assert ("Deployment", "md") in api.objects
    api.calls.clear()
    reconcile(ctx, NS, "md", memory)
    assert ("list", "Node") not in api.calls, "pods of v1 exist: no node list per pass"


def test_without_prefetch_no_node_is_listed() -> None:
    md = md_body("v1")
    md["spec"]["pod"] = {"nodeSelector": {"pool": "gpu"}}
    api, _, ctx, memory, _ = setup(md)
    reconcile(ctx, NS, "md", memory)
    assert ("list", "Node") not in api.calls
