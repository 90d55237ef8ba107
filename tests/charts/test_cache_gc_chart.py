"""The chart's per-node cache collector: off by default, and when on, a DaemonSet of the
runtime image with exactly the permissions its API calls need."""

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


def test_the_collector_is_off_by_default(render: Render) -> None:
    assert "DaemonSet" not in _kinds(render())


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
