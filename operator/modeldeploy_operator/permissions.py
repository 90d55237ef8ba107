"""Every Kubernetes permission the running operator needs, derived from its code.

Two sources make API calls: our adapter (`kube.API_CALLS` and `kube.CLUSTER_API_CALLS`,
the tables every call in `kube.Kube` goes through) and kopf, whose calls follow from the
handlers registered in `handlers.register` and from how kopf is run (cluster-wide or not,
peering or not):

- every resource a handler is registered for is listed and watched;
- a resource with change handlers (create/update/resume/delete) is patched, because kopf
  keeps its progress and diff-base in annotations;
- kopf posts core/v1 Events (create);
- CustomResourceDefinitions are listed and watched (kopf notices new resources);
- namespaces are listed and watched when the operator is namespaced (kopf follows them);
- peering objects are listed, watched and patched: ClusterKopfPeering cluster-wide,
  KopfPeering per namespace.

The chart's RBAC rules are tested against `required` (tests/charts/test_rbac.py), and
`modeldeploy-operator check` (the chart's `helm test`) asks the API server whether the
installed ServiceAccount holds each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import kopf

from modeldeploy_operator import handlers
from modeldeploy_operator.adapters import kube

# (verb, api group, resource); "" is the core group.
Triple = tuple[str, str, str]

KOPF_GROUP = "kopf.dev"
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
EVENTS = ("", "events")


@dataclass(frozen=True)
class Required:
    """What the operator needs, split by where the chart must grant it."""

    # Granted cluster-wide (ClusterRole) whatever the watched namespaces.
    cluster: frozenset[Triple]
    # Granted in every watched namespace (a Role each), or cluster-wide when the
    # operator watches all namespaces.
    namespaced: frozenset[Triple]


def _handler_resources() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(group, resource) of every watched resource, and of those with change handlers."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    watched: set[tuple[str, str]] = set()
    changed: set[tuple[str, str]] = set()
    for registered, into in (
        (registry._watching.get_all_handlers(), [watched]),
        (registry._spawning.get_all_handlers(), [watched]),
        (registry._changing.get_all_handlers(), [watched, changed]),
    ):
        for handler in registered:
            selector = handler.selector
            if selector is None:
                continue
            resource = selector.plural or selector.any_name
            if not isinstance(resource, str):
                raise ValueError(
                    f"handler {handler.id}: selector {selector!r} does not name a plural; "
                    "register handlers with (group, version, plural) so RBAC can be derived"
                )
            for target in into:
                target.add((selector.group or "", resource))
    return watched, changed


def required(*, clusterwide: bool, peering: bool) -> Required:
    """The permissions the operator needs when run with these flags."""
    watched, changed = _handler_resources()
    namespaced: set[Triple] = set(kube.API_CALLS)
    for group, resource in watched:
        namespaced |= {("list", group, resource), ("watch", group, resource)}
    for group, resource in changed:
        namespaced.add(("patch", group, resource))
    namespaced.add(("create", *EVENTS))

    cluster: set[Triple] = {("list", *CRDS), ("watch", *CRDS), *kube.CLUSTER_API_CALLS}
    if not clusterwide:
        cluster |= {("list", *NAMESPACES), ("watch", *NAMESPACES)}
    if peering:
        target, plural = (cluster, "clusterkopfpeerings") if clusterwide else (
            namespaced, "kopfpeerings"
        )
        target |= {(verb, KOPF_GROUP, plural) for verb in ("list", "watch", "patch")}
    return Required(cluster=frozenset(cluster), namespaced=frozenset(namespaced))
