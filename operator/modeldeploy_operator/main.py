"""`modeldeploy-operator`: run the kopf operator with the flags a deployment needs.

    modeldeploy-operator --all-namespaces --log-format json \\
        --liveness http://0.0.0.0:8081/healthz --metrics-port 9090 --standalone

`modeldeploy-operator check --all-namespaces` (what `helm test` runs) checks that the API
is served and the ServiceAccount holds every permission the operator uses.

Namespaces: `--namespace` (repeatable) or `--all-namespaces`. More than one operator
replica: `--peering NAME --priority N` (only the highest priority acts); a single one:
`--standalone`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

import kopf
from kopf._core.engines.peering import Identity  # the type kopf.run wants; not re-exported

from modeldeploy_operator import handlers, metrics
from modeldeploy_operator.adapters.kube import Kube, load_client_config
from modeldeploy_operator.adapters.runtime_client import RuntimeClient
from modeldeploy_operator.adapters.store import ChildStore
from modeldeploy_operator.reconcile import Context

DEFAULT_IMAGE_ENV = "MODELDEPLOY_DEFAULT_RUNTIME_IMAGE"


def peer_identity() -> str:
    """This operator's name among peers: host (a pod's name, in a pod) and process id.

    kopf's own default asks the password database for the user's name, and an image running
    as a uid it does not list (65532 here; any uid a platform assigns, as OpenShift does)
    ends there with KeyError before the operator starts.
    """
    return f"{socket.gethostname()}/{os.getpid()}"
LOG_FORMATS = {
    "json": kopf.LogFormat.JSON,
    "plain": kopf.LogFormat.FULL,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated: exactly one of --namespace or --all-namespaces."""
    parser = argparse.ArgumentParser(
        prog="modeldeploy-operator",
        description="Reconcile ModelDeployments into validated, safely rolled-out model servers.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeat)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace"
    )
    parser.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="plain")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8081/healthz",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", help="coordinate replicas through this KopfPeering"
    )
    peering.add_argument(
        "--standalone", action="store_true", help="no peering: this is the only operator"
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority (highest acts)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus /metrics here (0: off)"
    )
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address of /metrics")
    parser.add_argument(
        "--default-runtime-image",
        default=os.environ.get(DEFAULT_IMAGE_ENV) or None,
        help=f"runtime image for specs that keep the built-in default (env {DEFAULT_IMAGE_ENV})",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=handlers.RESYNC_SECONDS,
        help="relist each watched namespace from the API server about this often, one list "
        "per kind for all resources (between, watch events keep the operator current)",
    )
    args = parser.parse_args(argv)
    if args.resync_seconds <= 0:
        parser.error(f"--resync-seconds must be > 0, got {args.resync_seconds}")
    if args.priority and not args.peering:
        parser.error("--priority needs --peering NAME: priorities only matter between peers")
    return args


def _configure_logging(args: argparse.Namespace) -> None:
    kopf.configure(
        debug=args.log_level == "debug",
        verbose=args.log_level in ("debug", "info"),
        quiet=args.log_level == "error",
        log_format=LOG_FORMATS[args.log_format],
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.log_level != "debug":
        # kopf logs every handler call at INFO ("Handler ... succeeded"); with child
        # watches that is a line per pod event. Our reconcile log says what matters.
        for noisy in ("kopf.objects", "kopf.activities"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `modeldeploy-operator` console script."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["check"]:
        from modeldeploy_operator import check  # only the helm test needs it

        return check.main(given[1:])
    args = parse_args(given)
    _configure_logging(args)
    metrics.serve(args.metrics_port, args.metrics_host)
    registry = kopf.OperatorRegistry()
    handlers.register(registry)

    def make_context(store: ChildStore) -> Context:
        return Context(
            kube=Kube(load_client_config()),
            runtime=RuntimeClient(),
            default_image=args.default_runtime_image,
            store=store,
        )

    workers = handlers.Workers(make_context, resync_seconds=args.resync_seconds)
    kopf.run(
        identity=Identity(peer_identity()),
        registry=registry,
        standalone=not args.peering,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=args.liveness,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        memo=kopf.Memo(workers=workers),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
