"""ChildStore: the watch-fed children a reconcile reads instead of listing."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.adapters.store import (
    RELISTED_KINDS,
    ChildStore,
    WriteThrough,
    relist,
)

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


def test_a_relist_names_the_resources_whose_objects_the_watch_missed() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("a-v1", "1", owner="a"))
    store.observe("Deployment", obj("b-v1", "2", owner="b", replicas=1))
    store.observe("Deployment", obj("c-v1", "3", owner="c"))
    listed = [obj("a-v1", "1", owner="a"), obj("b-v1", "5", owner="b", replicas=3),
              obj("d-v1", "4", owner="d")]
    changed = store.replace("Deployment", "ns", listed, listed_at=6)
    # a: unchanged; b: changed; c: deleted unseen; d: created unseen.
    assert changed == {"b", "c", "d"}
    assert store.get("Deployment", "ns", "c-v1") is None
    assert store.get("Deployment", "ns", "b-v1")["spec"]["replicas"] == 3  # type: ignore[index]
    assert store.replace("Deployment", "ns", listed, listed_at=6) == set()


def test_a_relist_keeps_what_a_watch_delivered_after_the_list_was_read() -> None:
    store = ChildStore()
    store.observe("Deployment", obj("new", "9", owner="n"))
    store.observe("Deployment", obj("upd", "8", owner="u", replicas=2))
    changed = store.replace("Deployment", "ns", [obj("upd", "4", owner="u", replicas=1)],
                            listed_at=5)
    assert changed == set()
    assert store.get("Deployment", "ns", "new") is not None
    assert store.get("Deployment", "ns", "upd")["spec"]["replicas"] == 2  # type: ignore[index]


def test_a_relist_of_model_deployments_names_them_by_their_own_name() -> None:
    store = ChildStore()
    md = {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": "3"}}
    assert store.replace("ModelDeployment", "ns", [md], listed_at=3) == {"m"}
    assert store.replace("ModelDeployment", "ns", [], listed_at=4) == {"m"}


def test_relist_reads_each_kind_once_for_every_resource_of_the_namespace() -> None:
    kube = FakeKube()
    for owner in ("a", "b"):
        kube.apply(obj(f"{owner}-v1", "1", owner=owner))
    store = ChildStore()
    assert relist(kube, store, "ns") == {"a", "b"}  # type: ignore[arg-type]
    assert [c for c in kube.calls if c[0] == "list_labelled"] == [
        ("list_labelled", kind) for kind in RELISTED_KINDS
    ]
    assert relist(kube, store, "ns") == set()  # type: ignore[arg-type]


def test_the_store_keeps_no_other_clients_bookkeeping() -> None:
    store = ChildStore()
    held = obj("a", "1")
    held["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    held["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "modeldeploy.dev/promote": "true",
    }
    store.observe("Deployment", held)
    kept = store.get("Deployment", "ns", "a")
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"modeldeploy.dev/promote": "true"}
    assert "managedFields" in held["metadata"]  # the caller's object is left alone
