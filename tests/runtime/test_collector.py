"""The per-node cache collector: the reference set it unions, its reports, one pass."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from modeldeploy_contract.cache import ReferenceSet, inventory_annotation_key
from modeldeploy_runtime import collector, eviction

NODE = "node-a"
KEY = inventory_annotation_key(NODE)


def md(name: str, model: str, volume: str = "hostPath",
       refs: list[tuple[str, list[str]]] | None = None,
       annotations: dict[str, str] | None = None, claim: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {}
    cache = {"volume": volume, "hostPath": "/models"} if volume == "hostPath" else {
        "volume": volume, "claimName": claim}
    if refs is not None:
        status["cache"] = {"references": [
            {"name": model, "version": v, "roles": roles} for v, roles in refs]}
    return {
        "apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                     "annotations": annotations or {}},
        "spec": {"model": {"name": model, "version": "v9"},
                 "cache": cache},
        "status": status,
    }


class RecordingApi:
    """A stand-in for the API server: the objects it lists and the writes it got."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.annotated: list[tuple[str, dict[str, str | None]]] = []
        self.events: list[tuple[str, str, str]] = []

    def list_model_deployments(self) -> list[dict[str, Any]]:
        return self.items

    def annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.annotated.append((name, annotations))

    def post_event(self, md: dict[str, Any], reason: str, message: str, node: str,
                   stamp: str) -> None:
        self.events.append((md["metadata"]["name"], reason, message))


def test_the_reference_set_unions_what_every_shared_cache_publishes() -> None:
    refs = collector.reference_set([
        md("a", "minilm", refs=[("v2", ["current"]), ("v3", ["target"])]),
        md("b", "minilm", refs=[("v1", ["previous"])]),
        md("c", "other", volume="emptyDir", refs=[("v7", ["current"])]),
    ])
    assert refs.references == [("minilm", "v1"), ("minilm", "v2"), ("minilm", "v3")]
    assert refs.guarded_names == []


def test_a_shared_cache_that_published_nothing_yet_keeps_its_whole_model() -> None:
    refs = collector.reference_set([md("a", "minilm")])
    assert refs.keeps("minilm", "anything")
    assert not refs.keeps("other", "v1")


def test_one_pass_removes_the_unreferenced_reports_and_writes_the_reference_file(
    tmp_path: Path, helpers: Any,
) -> None:
    for version in ("v1", "v2", "v3"):
        helpers.put_entry(tmp_path, "minilm", version, 100, time.time() - 3600)
    api = RecordingApi([md("web", "minilm", refs=[("v3", ["current", "lastKnownGood"])])])
    result = collector.run_pass(api, tmp_path, NODE, min_age=60)
    assert sorted(r.version for r in result.removed) == ["v1", "v2"]
    assert result.freed == 200
    assert sorted(e.version for e in eviction.scan(tmp_path)) == ["v3"]
    assert [(n, r) for n, r, _ in api.events] == [("web", "CacheVersionRemoved")] * 2
    assert "freed 100 bytes" in api.events[0][2] and NODE in api.events[0][2]
    assert api.annotated == [("web", {KEY: json.dumps(
        {"node": NODE, "versions": {"v3": 100}}, separators=(",", ":"))})]
    written = eviction.read_references(tmp_path)
    assert written == ReferenceSet(references=[("minilm", "v3")])


def test_a_report_that_did_not_change_is_not_written_again(tmp_path: Path, helpers: Any) -> None:
    helpers.put_entry(tmp_path, "minilm", "v3", 100, time.time() - 3600)
    current = json.dumps({"node": NODE, "versions": {"v3": 100}}, separators=(",", ":"))
    api = RecordingApi([md("web", "minilm", refs=[("v3", ["current"])],
                           annotations={KEY: current})])
    collector.run_pass(api, tmp_path, NODE, min_age=60)
    assert api.annotated == []


def test_a_model_gone_from_the_node_clears_its_report(tmp_path: Path) -> None:
    api = RecordingApi([md("web", "minilm", refs=[("v3", ["current"])],
                           annotations={KEY: '{"node":"node-a","versions":{"v1":1}}'})])
    collector.run_pass(api, tmp_path, NODE, min_age=60)
    assert api.annotated == [("web", {KEY: None})]


def test_a_failing_report_does_not_stop_the_collection(tmp_path: Path, helpers: Any) -> None:
    helpers.put_entry(tmp_path, "minilm", "v1", 100, time.time() - 3600)

    class Refusing(RecordingApi):
        def post_event(self, *args: Any) -> None:
            raise RuntimeError("forbidden")

    api = Refusing([md("web", "minilm", refs=[("v2", ["target"])])])
    result = collector.run_pass(api, tmp_path, NODE, min_age=60)
    assert [r.version for r in result.removed] == ["v1"]


# -- a claim's collector ----------------------------------------------------------------


def fleet() -> list[dict[str, Any]]:
    """One model cached three ways: a node directory, the claim `shared`, another claim."""
    return [
        md("on-node", "minilm", refs=[("v3", ["current"])]),
        md("on-claim", "minilm", "persistentVolumeClaim", refs=[("v3", ["current"])],
           claim="shared"),
        md("elsewhere", "minilm", "persistentVolumeClaim", refs=[("v2", ["lastKnownGood"])],
           claim="other"),
    ]


def test_a_claims_collector_reports_only_to_the_deployments_caching_on_that_claim(
    tmp_path: Path, helpers: Any,
) -> None:
    for version in ("v1", "v2", "v3"):
        helpers.put_entry(tmp_path, "minilm", version, 100, time.time() - 3600)
    api = RecordingApi(fleet())
    scope = collector.Scope(claim="shared")
    result = collector.run_pass(api, tmp_path, "pvc/shared", min_age=60, scope=scope)
    # What any shared cache references is kept (a union can only keep more): v2 stays.
    assert [r.version for r in result.removed] == ["v1"]
    assert [(n, r) for n, r, _ in api.events] == [("on-claim", "CacheVersionRemoved")]
    assert api.events[0][2].startswith("claim shared: removed cached minilm/v1")
    key = inventory_annotation_key("pvc/shared")
    assert api.annotated == [("on-claim", {key: json.dumps(
        {"node": "pvc/shared", "versions": {"v2": 100, "v3": 100}}, separators=(",", ":"))})]


def test_a_node_collector_never_reports_its_directory_as_a_claims_content(
    tmp_path: Path, helpers: Any,
) -> None:
    helpers.put_entry(tmp_path, "minilm", "v3", 100, time.time() - 3600)
    api = RecordingApi(fleet())
    collector.run_pass(api, tmp_path, NODE, min_age=60,
                       scope=collector.Scope(host_path="/models"))
    assert [name for name, _ in api.annotated] == ["on-node"]

