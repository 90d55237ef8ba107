"""ChildStore: the watch-fed children a reconcile reads instead of listing."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.adapters.store import ChildStore, WriteThrough

from tests.operator.fake_kube import FakeKube

SELECTOR = {"modeldeploy.dev/modeldeployment": "md"}


def obj(name: str, version: str, owner: str = "md", **spec: Any) -> dict[str, Any]:
    return {"kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version,
                         "labels": {"modeldeploy.dev/modeldeployment": owner}},
            "spec": dict(spec)}


def test_watch_events_add_replace_and_remove_objects() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("a", "1", replicas=1))
    store.observe("Deployment", obj("a", "2", replicas=2))
    store.observe("Deployment", obj("b", "3", owner="other"))
    assert [d["spec"]["replicas"] for d in store.list("Deployment", "ns", SELECTOR)] == [2]
    store.observe("Deployment", obj("a", "4"), deleted=True)
    assert store.list("Deployment", "ns", SELECTOR) == []
    assert store.get("Deployment", "ns", "b") is not None


def test_an_older_copy_never_replaces_a_newer_one() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("a", "7", replicas=3))
    store.seed("Deployment", "ns", SELECTOR, [obj("a", "5", replicas=1)])
    assert store.get("Deployment", "ns", "a")["spec"]["replicas"] == 3  # type: ignore[index]


def test_a_fresh_list_drops_what_a_missed_delete_event_left_behind() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("gone", "1"))
    store.observe("Deployment", obj("other-owner", "1", owner="x"))
    store.seed("Deployment", "ns", SELECTOR, [obj("kept", "2")])
    assert [d["metadata"]["name"] for d in store.list("Deployment", "ns", SELECTOR)] == ["kept"]
    assert store.get("Deployment", "ns", "other-owner") is not None


def test_copies_handed_out_cannot_change_the_store() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("a", "1", replicas=1))
    store.list("Deployment", "ns", SELECTOR)[0]["spec"]["replicas"] = 9
    assert store.get("Deployment", "ns", "a")["spec"]["replicas"] == 1  # type: ignore[index]


def test_writes_through_the_store_are_seen_before_their_watch_event() -> None:
    store, kube = ChildStore(), FakeKube()
    writes = WriteThrough(kube, store)
    writes.apply(obj("a", "1", replicas=2))
    assert store.get("Deployment", "ns", "a") is not None
    writes.delete("Deployment", "ns", "a")
    assert store.get("Deployment", "ns", "a") is None


def test_a_relisted_copy_is_no_news_but_a_change_or_a_delete_is() -> None:
    store = ChildStore()
    assert store.observe("Deployment", obj("a", "1", replicas=1)) is True
    assert store.observe("Deployment", obj("a", "1", replicas=1)) is False  # watch relist
    assert store.observe("Deployment", obj("a", "2", replicas=2)) is True
    assert store.observe("Deployment", obj("a", "1", replicas=1)) is False  # older
    assert store.observe("Deployment", obj("a", "3"), deleted=True) is True
    assert store.observe("Deployment", obj("a", "3"), deleted=True) is False
