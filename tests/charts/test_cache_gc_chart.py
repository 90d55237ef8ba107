"""The chart's cache collectors: on by default, a DaemonSet of the runtime image over the
hostPath cache, one Deployment per listed PVC cache in the claim's namespace, each with
exactly the permissions its API calls need."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from .conftest import ROOT, Render

KUBEAPI = ROOT / "runtime/modeldeploy_runtime/kubeapi.py"


def _kinds(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def test_the_hostpath_collector_is_on_by_default_and_can_be_turned_off(render: Render) -> None:
    (daemonset,) = _kinds(render())["DaemonSet"]
    assert daemonset["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == (
        "/var/cache/modeldeploy")
    off = _kinds(render("--set", "cacheGC.enabled=false"))
    assert "DaemonSet" not in off
    assert not [o for kind in ("ClusterRole", "ServiceAccount") for o in off[kind]
                if "cache-gc" in o["metadata"]["name"]]


def test_enabled_it_runs_cache_gc_on_every_node_over_the_hostpath(render: Render) -> None:
    objects = _kinds(render("--set", "cacheGC.enabled=true", "--set",
                            "cacheGC.hostPath=/data/models", "--set",
                            "runtime.image=reg/runtime:1"))
    (daemonset,) = objects["DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "reg/runtime:1"
    assert container["command"] == ["modeldeploy-runtime"]
    assert container["args"][:3] == ["cache", "gc", "--loop"]
    assert "--host-path=/data/models" in container["args"]
    assert pod["volumes"][0]["hostPath"]["path"] == "/data/models"
    assert container["volumeMounts"][0]["mountPath"] == "/cache"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def _calls() -> set[tuple[str, str]]:
    """(HTTP method, resource) of every request kubeapi.py sends."""
    tree = ast.parse(Path(KUBEAPI).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_call" and isinstance(node.args[0], ast.Constant)):
            path = ast.unparse(node.args[1])
            resource = "events" if "events" in path else "modeldeployments"
            found.add((str(node.args[0].value), resource))
    return found


def test_its_role_grants_exactly_the_calls_it_makes(render: Render) -> None:
    objects = _kinds(render("--set", "cacheGC.enabled=true"))
    role = next(r for r in objects["ClusterRole"] if r["metadata"]["name"].endswith("cache-gc"))
    granted = {(verb, res) for rule in role["rules"] for res in rule["resources"]
               for verb in rule["verbs"]}
    verb_of = {"GET": "list", "PATCH": "patch", "POST": "create"}
    assert granted == {(verb_of[m], r) for m, r in _calls()}
    binding = next(b for b in objects["ClusterRoleBinding"]
                   if b["roleRef"]["name"] == role["metadata"]["name"])
    assert binding["subjects"][0]["name"] == role["metadata"]["name"]


def _claims(*pairs: tuple[str, str]) -> list[str]:
    args = ["--set", "cacheGC.enabled=false", "--set", "runtime.image=reg/runtime:1"]
    for index, (namespace, claim) in enumerate(pairs):
        args += ["--set", f"cacheGC.claims[{index}].namespace={namespace}",
                 "--set", f"cacheGC.claims[{index}].claimName={claim}"]
    return args


def test_each_listed_claim_gets_one_collector_in_its_namespace_mounting_it(
    render: Render,
) -> None:
    objects = _kinds(render(*_claims(("models", "cache-a"), ("models", "cache-b"),
                                     ("team2", "cache-a"))))
    assert "DaemonSet" not in objects
    collectors = {(d["metadata"]["namespace"], d["spec"]["template"]["spec"]["volumes"][0]
                   ["persistentVolumeClaim"]["claimName"]): d for d in objects["Deployment"]
                  if "cache-gc" in d["metadata"]["name"]}
    assert sorted(collectors) == [("models", "cache-a"), ("models", "cache-b"),
                                  ("team2", "cache-a")]
    one = collectors[("models", "cache-b")]
    assert one["spec"]["replicas"] == 1 and one["spec"]["strategy"]["type"] == "Recreate"
    pod = one["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "reg/runtime:1"
    assert container["args"][:3] == ["cache", "gc", "--loop"]
    assert {"--root=/cache", "--claim=cache-b", "--namespace=models"} <= set(container["args"])
    assert container["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Two claims of one namespace are told apart by their selectors.
    selectors = [d["spec"]["selector"]["matchLabels"] for (ns, _), d in collectors.items()
                 if ns == "models"]
    assert selectors[0] != selectors[1]


def test_a_claims_collector_may_read_only_its_own_namespace(render: Render) -> None:
    objects = _kinds(render(*_claims(("models", "cache-a"), ("models", "cache-b"),
                                     ("team2", "cache-a"))))
    accounts = [(a["metadata"]["namespace"], a["metadata"]["name"])
                for a in objects["ServiceAccount"] if "cache-gc" in a["metadata"]["name"]]
    assert sorted(ns for ns, _ in accounts) == ["models", "team2"], "one per namespace"
    (role,) = [r for r in objects["ClusterRole"] if r["metadata"]["name"].endswith("cache-gc")]
    bindings = objects["RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings
                  if b["roleRef"]["name"] == role["metadata"]["name"]) == ["models", "team2"]
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert (subject["namespace"], subject["name"]) in accounts
    assert not [b for b in objects.get("ClusterRoleBinding", [])
                if b["roleRef"]["name"] == role["metadata"]["name"]], "no cluster-wide grant"
    for deployment in objects["Deployment"]:
        if "cache-gc" in deployment["metadata"]["name"]:
            name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            assert (deployment["metadata"]["namespace"], name) in accounts
