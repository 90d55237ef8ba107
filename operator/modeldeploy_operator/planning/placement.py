"""Which nodes the serving pods' placement fields let them run on (for the prefetch step). Pure.

The scheduler's own node filters, as far as `spec.pod` expresses them: `nodeSelector`
(every label equal), the required node affinity (terms ORed, the expressions of a term
ANDed; an empty term matches nothing) and the taints the pods must tolerate (`NoSchedule`
and `NoExecute`; a cordoned node counts as tainted `node.kubernetes.io/unschedulable`).
Resources and pod (anti-)affinity are not judged: a node that passes may still lack room,
which costs a prefetch that no pod uses, never a pod that misses its files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modeldeploy_operator.api.pod import PodSpec
from modeldeploy_operator.planning.observations import NodeView

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
_REPELLING = ("NoSchedule", "NoExecute")


def _required_terms(pod: PodSpec) -> list[Mapping[str, Any]] | None:
    node_affinity = (pod.affinity or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def selects(pod: PodSpec) -> bool:
    """True when the placement fields narrow the nodes (a nodeSelector or a required node
    affinity); tolerations alone only permit, and an unconstrained pod may go anywhere."""
    return bool(pod.node_selector) or _required_terms(pod) is not None


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _expression_holds(expression: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key, operator = str(expression.get("key", "")), expression.get("operator")
    wanted = [str(v) for v in expression.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        have, bound = _number(values[key]), _number(wanted[0])
        if have is None or bound is None:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def _term_holds(term: Mapping[str, Any], node: NodeView) -> bool:
    expressions = list(term.get("matchExpressions") or [])
    fields = list(term.get("matchFields") or [])
    if not expressions and not fields:
        return False
    labels = dict(node.labels)
    return all(_expression_holds(e, labels) for e in expressions) and all(
        _expression_holds(f, {"metadata.name": node.name}) for f in fields)


def _tolerated(taint: tuple[str, str, str], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    key, value, effect = taint
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != effect:
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == key:
                return True
        elif toleration.get("key") == key and str(toleration.get("value") or "") == value:
            return True
    return False


def fits(pod: PodSpec, node: NodeView) -> bool:
    """True when the scheduler's node filters would let a serving pod onto `node`."""
    labels = dict(node.labels)
    if any(labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    terms = _required_terms(pod)
    if terms is not None and not any(_term_holds(t, node) for t in terms):
        return False
    taints = list(node.taints)
    if node.unschedulable:
        taints.append((UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    return all(_tolerated(t, pod.tolerations) for t in taints if t[2] in _REPELLING)


def selected_nodes(pod: PodSpec, nodes: Iterable[NodeView]) -> list[str]:
    """The nodes the placement fields select, by name; none when they select nothing in
    particular (prefetching onto every node of a cluster is not what such a user asked)."""
    if not selects(pod):
        return []
    return sorted(n.name for n in nodes if fits(pod, n))
