"""Pure pieces of the node agent: env, argv, mounts, status, back-off, probes bookkeeping."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest
from modeldeploy_e2e.nodeagent import podspec, status
from modeldeploy_e2e.nodeagent.probes import ProbeTracker
from modeldeploy_e2e.nodeagent.process import STAGE, launch_script, rewrite_paths

POD = {"metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
       "spec": {"serviceAccountName": "sa"}}
FACTS = podspec.PodFacts(pod_ip="127.244.0.7", host_ip="127.0.0.1", node_name="n1")


def lookup(objects: dict[tuple[str, str], dict[str, str]]) -> podspec.Lookup:
    def find(namespace: str, name: str) -> Mapping[str, str] | None:
        return objects.get((namespace, name))
    return find


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_env_resolves_values_refs_fields_and_expansion() -> None:
    container = {"name": "c", "env": [
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "URL", "value": "http://$(HOST):8080/$$x/$(UNKNOWN)"},
    ], "resources": {"limits": {"memory": "64Mi"}}}
    env = podspec.container_env(
        POD, container, FACTS,
        secrets=lookup({("ns", "s3"): {"secret": b64("hunter2")}}),
        config_maps=lookup({("ns", "cfg"): {"mode": "fast"}}))
    assert env == {"HOST": "127.244.0.7", "NAME": "web-1", "NS": "ns", "APP": "web",
                   "KEY": "hunter2", "MODE": "fast", "URL": "http://127.244.0.7:8080/$x/$(UNKNOWN)"}


def test_missing_secret_key_names_the_secret_and_the_fix() -> None:
    container = {"name": "c", "env": [
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "nope"}}}]}
    with pytest.raises(podspec.ConfigError, match=r"Secret ns/s3 has no key 'nope'.*optional"):
        podspec.container_env(POD, container, FACTS, lookup({("ns", "s3"): {"a": b64("x")}}),
                              lookup({}))


def test_optional_missing_config_map_is_skipped() -> None:
    container = {"name": "c", "env": [{"name": "M", "valueFrom": {"configMapKeyRef": {
        "name": "absent", "key": "k", "optional": True}}}]}
    assert podspec.container_env(POD, container, FACTS, lookup({}), lookup({})) == {}


def test_argv_requires_a_command_because_images_are_not_pulled() -> None:
    with pytest.raises(podspec.ConfigError, match="set command"):
        podspec.container_argv({"name": "c", "image": "x", "args": ["serve"]}, {})
    argv = podspec.container_argv({"command": ["srv"], "args": ["--host", "$(H)"]}, {"H": "h"})
    assert argv == ["srv", "--host", "h"]


def test_volume_mounts_follow_sub_path_and_read_only() -> None:
    container = {"name": "c", "volumeMounts": [
        {"name": "cache", "mountPath": "/var/cache/modeldeploy"},
        {"name": "cfg", "mountPath": "/etc/modeldeploy/config.yaml", "subPath": "config.yaml",
         "readOnly": True}]}
    mounts = podspec.volume_mounts(container, {"cache": Path("/h/cache"), "cfg": Path("/h/cfg")})
    assert mounts == [podspec.Mount(Path("/h/cache"), "/var/cache/modeldeploy", False),
                      podspec.Mount(Path("/h/cfg/config.yaml"), "/etc/modeldeploy/config.yaml",
                                    True)]
    with pytest.raises(podspec.ConfigError, match="names no volume"):
        podspec.volume_mounts({"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]},
                              {})


def test_quantities_parse_binary_and_decimal_suffixes() -> None:
    assert podspec.parse_quantity("512Mi") == 512 * 2**20
    assert podspec.parse_quantity("1G") == 1e9
    assert podspec.parse_quantity("250m") == 0.25
    with pytest.raises(ValueError, match="512Mb"):
        podspec.parse_quantity("512Mb")


def test_launch_script_bind_mounts_then_execs(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")
    script = launch_script([podspec.Mount(tmp_path, "/etc/modeldeploy", True),
                            podspec.Mount(log, "/dev/termination-log", False, is_file=True)],
                           "/work dir", None, keep_visible=[Path("/repo")])
    lines = script.splitlines()
    # Sources are reached through the private stage, so no mountPath can hide them.
    assert f"mount --bind {tmp_path} {STAGE}/1" in lines
    assert f"mount --bind {STAGE}/1 /etc/modeldeploy" in lines
    assert "mount -o remount,bind,ro /etc/modeldeploy" in lines
    assert "[ -e /dev/termination-log ] || : > /dev/termination-log" in lines
    assert f": > {STAGE}/2" in lines and f"mount --bind {STAGE}/2 /dev/termination-log" in lines
    assert script.endswith("cd '/work dir'\nexec \"$@\"")


def test_a_mount_over_tmp_does_not_hide_a_checkout_under_tmp(tmp_path: Path) -> None:
    checkout = Path("/tmp/fresh")
    script = launch_script([podspec.Mount(tmp_path, "/tmp", False)], "/", None,
                           keep_visible=[checkout])
    lines = script.splitlines()
    assert lines.index(f"mount --bind {STAGE}/1 /tmp") < lines.index(
        f"mount --bind {STAGE}/0 /tmp/fresh")


def test_a_kept_path_no_mount_covers_is_left_alone(tmp_path: Path) -> None:
    script = launch_script([podspec.Mount(tmp_path, "/etc/x", False)], "/", None,
                           keep_visible=[Path("/work/main")])
    assert f"mount --bind {STAGE}/0 /work/main" not in script.splitlines()


def test_path_rewrite_prefers_the_longest_mount_path() -> None:
    mounts = [podspec.Mount(Path("/h/etc"), "/etc/modeldeploy", False),
              podspec.Mount(Path("/h/cfg"), "/etc/modeldeploy/conf", False)]
    assert rewrite_paths(["/etc/modeldeploy/conf/a", "/etc/modeldeploy/b", "/etc/other"],
                         mounts) == ["/h/cfg/a", "/h/etc/b", "/etc/other"]


def view(**overrides: object) -> status.PodView:
    base: dict[str, object] = {"restart_policy": "Always", "pod_ip": "127.244.0.2",
                               "host_ip": "127.0.0.1", "start_time": "t0", "now": "t1"}
    base.update(overrides)
    return status.PodView(**base)  # type: ignore[arg-type]


def test_pod_is_pending_until_init_containers_succeed() -> None:
    init = status.ContainerRecord("init", "img", state={"running": {}})
    main = status.ContainerRecord("main", "img")
    result = status.pod_status([init], [main], view(), [])
    assert result["phase"] == "Pending"
    conditions = {c["type"]: c["status"] for c in result["conditions"]}
    assert conditions["Initialized"] == "False"
    assert conditions["Ready"] == "False"


def test_ready_needs_every_container_ready_and_keeps_foreign_conditions() -> None:
    a = status.ContainerRecord("a", "img", state={"running": {}}, ready=True, started=True)
    b = status.ContainerRecord("b", "img", state={"running": {}}, ready=False, started=True)
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t-1"}
    result = status.pod_status([], [a, b], view(), [scheduled])
    kinds = {c["type"]: c["status"] for c in result["conditions"]}
    assert result["phase"] == "Running"
    assert kinds == {"PodScheduled": "True", "PodReadyToStartContainers": "True",
                     "Initialized": "True", "ContainersReady": "False", "Ready": "False"}
    b.ready = True
    again = status.pod_status([], [a, b], view(now="t2"), result["conditions"])
    ready = next(c for c in again["conditions"] if c["type"] == "Ready")
    initialized = next(c for c in again["conditions"] if c["type"] == "Initialized")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "t2"
    assert initialized["lastTransitionTime"] == "t1"  # unchanged status keeps its time


def test_readiness_gate_holds_ready_until_its_condition_is_true() -> None:
    a = status.ContainerRecord("a", "img", state={"running": {}}, ready=True, started=True)
    gates = ("modeldeploy.dev/validated",)
    result = status.pod_status([], [a], view(readiness_gates=gates), [])
    assert next(c for c in result["conditions"] if c["type"] == "Ready")["status"] == "False"
    gate = {"type": "modeldeploy.dev/validated", "status": "True", "lastTransitionTime": "t"}
    result = status.pod_status([], [a], view(readiness_gates=gates), [gate])
    assert next(c for c in result["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_terminal_phase_reflects_exit_codes() -> None:
    ok = status.ContainerRecord("a", "img", state={"terminated": {"exitCode": 0}})
    bad = status.ContainerRecord("b", "img", state={"terminated": {"exitCode": 3}})
    assert status.phase([], [ok], view(restart_policy="Never", terminal=True)) == "Succeeded"
    assert status.phase([], [ok, bad], view(restart_policy="Never", terminal=True)) == "Failed"


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [status.backoff_seconds(n, 10) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert status.should_restart("Always", 0)
    assert status.should_restart("OnFailure", 1) and not status.should_restart("OnFailure", 0)
    assert not status.should_restart("Never", 1)


def test_probe_tracker_applies_delay_and_thresholds() -> None:
    tracker = ProbeTracker({"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2,
                            "successThreshold": 1}, started_at=100.0)
    assert not tracker.due(104.9) and tracker.due(105.0)
    tracker.record(True, 105.0)
    assert tracker.passed and not tracker.due(106.0) and tracker.due(107.0)
    tracker.record(False, 107.0)
    assert tracker.passed and not tracker.failed_out  # one failure is below the threshold
    tracker.record(False, 109.0)
    assert not tracker.passed and tracker.failed_out
