"""`modeldeploy-operator check`: is this install able to run the operator? (`helm test`)

Run with the operator's ServiceAccount and the operator's scope flags, it asks the API
server (SelfSubjectAccessReview, which every authenticated user may create) whether each
permission in `permissions.required` is held, and whether the ModelDeployment API is
served. Exit 0 when everything is there; exit 1 naming each missing permission.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modeldeploy_operator import permissions
from modeldeploy_operator.adapters.kube import load_client_config
from modeldeploy_operator.api.spec import GROUP, PLURAL, VERSION

# (verb, group, resource, namespace or None for cluster scope)
Question = tuple[str, str, str, str | None]


def questions(required: permissions.Required, namespaces: Sequence[str]) -> list[Question]:
    """Each permission to ask about, in each namespace where it must hold."""
    asked: list[Question] = [(v, g, r, None) for v, g, r in sorted(required.cluster)]
    scopes: Iterable[str | None] = namespaces or [None]
    for namespace in scopes:
        asked.extend((v, g, r, namespace) for v, g, r in sorted(required.namespaced))
    return asked


def describe(question: Question) -> str:
    """`patch apps/deployments in team-a` — how a missing permission is named."""
    verb, group, resource, namespace = question
    where = f"in {namespace}" if namespace else "cluster-wide"
    return f"{verb} {group + '/' if group else ''}{resource} {where}"


def run_check(asked: Sequence[Question], allowed: Callable[[Question], bool]) -> list[str]:
    """The missing permissions among `asked`, described."""
    return [describe(q) for q in asked if not allowed(q)]


def _allowed(api: client.AuthorizationV1Api) -> Callable[[Question], bool]:
    def ask(question: Question) -> bool:
        verb, group, resource, namespace = question
        subresource = ""
        if "/" in resource:
            resource, subresource = resource.split("/", 1)
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource,
                    subresource=subresource or None, namespace=namespace,
                )
            )
        )
        answer = api.create_self_subject_access_review(review)
        return bool(answer.status and answer.status.allowed)

    return ask


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modeldeploy-operator check`."""
    parser = argparse.ArgumentParser(
        prog="modeldeploy-operator check",
        description="Check that the API is served and this ServiceAccount holds every "
        "permission the operator uses (run with the operator's scope flags).",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", default=[])
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    parser.add_argument("--peering", action="store_true", help="the operator runs with peering")
    args = parser.parse_args(argv)

    api_client = load_client_config()
    objects = client.CustomObjectsApi(api_client)
    try:
        if args.all_namespaces:
            objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
        else:
            objects.list_namespaced_custom_object(
                GROUP, VERSION, args.namespace[0], PLURAL, limit=1
            )
    except ApiException as exc:
        print(
            f"listing {PLURAL}.{GROUP}/{VERSION} failed: HTTP {exc.status} {exc.reason}; "
            f"apply the CRD first (kubectl apply -f crds/) and check the ServiceAccount's RBAC",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {PLURAL}.{GROUP}/{VERSION} is served")

    required = permissions.required(clusterwide=args.all_namespaces, peering=args.peering)
    asked = questions(required, args.namespace)
    missing = run_check(asked, _allowed(client.AuthorizationV1Api(api_client)))
    for line in missing:
        print(f"missing permission: {line}", file=sys.stderr)
    if missing:
        print(
            f"{len(missing)} of {len(asked)} permissions missing; grant them in the chart's "
            "RBAC rules (templates/_rbac.tpl)",
            file=sys.stderr,
        )
        return 1
    print(f"ok: all {len(asked)} permissions the operator uses are granted")
    return 0
