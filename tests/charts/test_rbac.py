"""The chart grants exactly the permissions the operator's code uses: no less, no more.

What the code uses comes from two places, both derived rather than restated here:
`kube.API_CALLS` (checked below against the HTTP calls `kube.Kube` really makes) and
kopf's calls implied by the registered handlers (`permissions.required`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from modeldeploy_operator import permissions
from modeldeploy_operator.adapters import kube, store
from modeldeploy_operator.check import describe, questions, run_check

ROOT = Path(__file__).resolve().parents[2]
CI_VALUES = ROOT / "charts/modeldeploy/ci/watch-namespaces-values.yaml"
Render = Callable[..., list[dict[str, Any]]]
Triple = tuple[str, str, str]

# -- what kube.Kube really sends ------------------------------------------------------


@dataclass
class _Response:
    status: int = 200
    reason: str = "OK"
    body: bytes = b"{}"

    def read(self) -> bytes:
        return self.body


@dataclass
class RecordingApi:
    """Stands in for kubernetes.client.ApiClient: records each request, answers 200 {}."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def param_serialize(self, **kwargs: Any) -> tuple[Any, ...]:
        headers = kwargs["header_params"]
        self.requests.append(
            (kwargs["method"], kwargs["resource_path"], headers.get("Content-Type", ""))
        )
        return (kwargs["method"], kwargs["resource_path"])

    def call_api(self, *_: Any, **__: Any) -> _Response:
        return _Response()


def rbac_of(method: str, path: str, content_type: str) -> set[Triple]:
    """The (verb, group, resource) triples the API server authorizes a request as."""
    parts = urlsplit(path).path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces":
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
    if sub:
        resource = f"{resource}/{sub[0]}"
    verb = {
        "GET": "get" if name else "list",
        "POST": "create",
        "DELETE": "delete",
        "PATCH": "patch",
    }[method]
    triples = {(verb, group, resource)}
    if content_type == kube.APPLY:
        # Server-side apply creates the object when it is absent, and is authorized so.
        triples.add(("create", group, resource))
    return triples


def operator_call_sites() -> set[tuple[str, str | None]]:
    """(Kube method, literal kind) of every `kube.<method>(...)` call in the operator code.

    `apply` takes a whole manifest whose kind the builders choose;
    those count for every kind the adapter handles.
    """
    public = {n for n in vars(kube.Kube) if not n.startswith("_")}
    sites: set[tuple[str, str | None]] = set()
    for path in (ROOT / "operator/modeldeploy_operator").rglob("*.py"):
        if path.name == "kube.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(
                owner, "id", ""
            )
            if owner_name != "kube" or node.func.attr not in public:
                continue
            kind = None
            if node.func.attr in {"get", "list", "delete"}:
                first = node.args[0]
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{path.name}:{node.lineno}: kube.{node.func.attr} with a computed kind; "
                    "pass the kind as a literal so RBAC can be derived"
                )
                kind = first.value
            sites.add((node.func.attr, kind))
    return sites


def replay(api: RecordingApi, sites: set[tuple[str, str | None]]) -> None:
    """Make each call site's request through the real adapter."""
    k = kube.Kube(api)  # type: ignore[arg-type]
    md = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": "m", "namespace": "ns", "uid": "u"}}
    for method, kind in sorted(sites, key=str):
        if method == "list_labelled":
            # The resync relists every kind it names, with one call each.
            for each in store.RELISTED_KINDS:
                k.list_labelled(each, "ns")
            continue
        kinds = [kind] if kind else list(kube._RESOURCES)
        for each in kinds:
            manifest = {"kind": each, "metadata": {"name": "x", "namespace": "ns"}}
            match method:
                case "get_model_deployment":
                    k.get_model_deployment("ns", "m")
                case "patch_status":
                    k.patch_status("ns", "m", {"phase": "Available"})
                case "apply":
                    k.apply(manifest)
                case "get":
                    k.get(each, "ns", "x")
                case "delete":
                    k.delete(each, "ns", "x")
                case "list":
                    k.list(each, "ns", {"a": "b"})
                case "scale":
                    k.scale("ns", "x", 2)
                case "list_nodes":
                    k.list_nodes()
                case "post_event":
                    k.post_event(md, "Normal", "Reason", "message", "2026-01-01T00:00:00Z")
                case _:
                    raise AssertionError(f"kube.Kube.{method} is new: replay it here")


def test_operator_call_sites_are_found() -> None:
    sites = operator_call_sites()
    assert ("list", "Pod") in sites and ("apply", None) in sites
    assert ("patch_status", None) in sites


def test_api_calls_table_is_exactly_what_the_operator_code_sends() -> None:
    api = RecordingApi()
    replay(api, operator_call_sites())
    sent: set[Triple] = set()
    sent_cluster_wide: set[Triple] = set()
    for method, path, content_type in api.requests:
        into = sent if "/namespaces/" in path else sent_cluster_wide
        into |= rbac_of(method, path, content_type)
    assert sorted(sent - kube.API_CALLS) == [], "sent but missing from kube.API_CALLS"
    assert sorted(kube.API_CALLS - sent) == [], "in kube.API_CALLS but never sent"
    assert sent_cluster_wide == kube.CLUSTER_API_CALLS


# -- what the chart grants --------------------------------------------------------------


def operator_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's objects: not the cache collectors' (test_cache_gc_chart checks theirs)."""
    return [o for o in objects if (o["metadata"].get("labels") or {}).get(
        "app.kubernetes.io/component") != "cache-gc"]


def grants(objects: list[dict[str, Any]]) -> tuple[set[Triple], dict[str, set[Triple]]]:
    """(cluster-wide grants, grants per namespace) of the chart's ClusterRole and Roles."""

    def expand(rules: list[dict[str, Any]]) -> set[Triple]:
        return {(verb, group, resource) for rule in rules for group in rule["apiGroups"]
                for resource in rule["resources"] for verb in rule["verbs"]}

    cluster: set[Triple] = set()
    by_namespace: dict[str, set[Triple]] = {}
    for obj in operator_objects(objects):
        if obj["kind"] == "ClusterRole":
            cluster |= expand(obj["rules"])
        elif obj["kind"] == "Role":
            by_namespace.setdefault(obj["metadata"]["namespace"], set()).update(
                expand(obj["rules"])
            )
    return cluster, by_namespace


def differences(objects: list[dict[str, Any]], *, namespaces: list[str],
                peering: bool) -> list[str]:
    """What the chart lacks and what it grants beyond the code's needs, one line each."""
    need = permissions.required(clusterwide=not namespaces, peering=peering)
    cluster, by_namespace = grants(objects)
    problems: list[str] = []
    scopes: dict[str | None, tuple[set[Triple], set[Triple]]] = {}
    if namespaces:
        scopes[None] = (set(need.cluster), cluster)
        for ns in namespaces:
            scopes[ns] = (set(need.namespaced), by_namespace.get(ns, set()))
        for extra_ns in set(by_namespace) - set(namespaces):
            problems.append(f"a Role in unwatched namespace {extra_ns}")
    else:
        scopes[None] = (set(need.cluster | need.namespaced), cluster)
        problems += [f"a Role in {ns} although cluster-wide" for ns in by_namespace]
    for ns, (needed, granted) in scopes.items():
        problems += ["missing: " + describe((*t, ns)) for t in sorted(needed - granted)]
        problems += ["never used: " + describe((*t, ns)) for t in sorted(granted - needed)]
    return problems


@pytest.mark.parametrize(
    ("args", "namespaces", "peering"),
    [
        ((), [], False),
        (("--set", "peering.enabled=true", "--set", "replicaCount=2"), [], True),
        (("-f", str(CI_VALUES)), ["team-a", "team-b"], True),
        (("--set", "watchNamespaces={solo}"), ["solo"], False),
    ],
    ids=["cluster-wide", "cluster-wide-peering", "ci-namespaced-peering", "one-namespace"],
)
def test_chart_grants_exactly_what_the_operator_calls(
    render: Render, args: tuple[str, ...], namespaces: list[str], peering: bool
) -> None:
    assert differences(render(*args), namespaces=namespaces, peering=peering) == []


def test_a_verb_dropped_from_the_chart_is_reported_by_name(render: Render) -> None:
    objects = render()
    (role,) = [o for o in operator_objects(objects) if o["kind"] == "ClusterRole"]
    for rule in role["rules"]:
        if rule["resources"] == ["deployments"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
            rule["verbs"].append("deletecollection")
    assert differences(objects, namespaces=[], peering=False) == [
        "missing: patch apps/deployments cluster-wide",
        "never used: deletecollection apps/deployments cluster-wide",
    ]


def test_kopf_needs_follow_from_the_registered_handlers() -> None:
    need = permissions.required(clusterwide=True, peering=False)
    # Child watches: kopf lists and watches Deployments and Pods to wake their owner.
    assert {("watch", "apps", "deployments"), ("watch", "", "pods")} <= need.namespaced
    # Change handlers keep progress in annotations: kopf patches the ModelDeployment.
    assert ("patch", "modeldeploy.dev", "modeldeployments") in need.namespaced
    assert ("list", "", "namespaces") not in need.cluster, "cluster-wide kopf skips namespaces"
    assert ("list", "", "namespaces") in permissions.required(
        clusterwide=False, peering=False
    ).cluster


def test_helm_test_check_names_each_missing_permission() -> None:
    need = permissions.required(clusterwide=False, peering=False)
    asked = questions(need, ["team-a"])
    denied = {("patch", "apps", "deployments", "team-a")}
    assert run_check(asked, lambda q: q not in denied) == ["patch apps/deployments in team-a"]
    assert run_check(asked, lambda q: True) == []
