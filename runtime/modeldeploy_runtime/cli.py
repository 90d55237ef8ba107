"""`modeldeploy-runtime fetch|serve|cache gc`: the entry point of both containers of a
serving pod, and of the per-node cache collector."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from modeldeploy_runtime import termination

# pydantic (~0.3 s) and the rest are imported inside main(), after `serve` has started
# importing torch in a thread: start-up is mostly imports.
DEFAULT_CONFIG_PATH = "/etc/modeldeploy/runtime.json"

log = logging.getLogger("modeldeploy.runtime")
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy-runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get("MODELDEPLOY_CONFIG",
                                                           DEFAULT_CONFIG_PATH),
                        help="runtime config JSON (env MODELDEPLOY_CONFIG)")
    common.add_argument("--cache-root", default=os.environ.get("MODELDEPLOY_CACHE_ROOT"),
                        help="cache root (env MODELDEPLOY_CACHE_ROOT; default: cache.path)")
    common.add_argument("--termination-log", default=termination.DEFAULT_TERMINATION_LOG,
                        help="where the one-line failure reason goes")
    sub.add_parser("fetch", parents=[common], help="copy the model version into the cache")
    serve = sub.add_parser("serve", parents=[common], help="load, warm up, validate and serve")
    serve.add_argument("--host", default=os.environ.get("MODELDEPLOY_HOST", DEFAULT_HOST),
                       help="address to bind, the pod IP (env MODELDEPLOY_HOST)")
    serve.add_argument("--port", type=int,
                       default=int(os.environ.get("MODELDEPLOY_PORT", DEFAULT_PORT)),
                       help="port (env MODELDEPLOY_PORT)")
    cache_cmd = sub.add_parser("cache", help="manage a shared model cache")
    cache_sub = cache_cmd.add_subparsers(dest="cache_command", required=True)
    gc = cache_sub.add_parser(
        "gc", help="remove versions no ModelDeployment references and report what is left")
    gc.add_argument("--root", default=os.environ.get("MODELDEPLOY_CACHE_ROOT",
                                                     "/var/cache/modeldeploy"),
                    help="the cache directory as mounted here (env MODELDEPLOY_CACHE_ROOT)")
    gc.add_argument("--node", default=os.environ.get("NODE_NAME", ""),
                    help="this node's name, for reports (env NODE_NAME)")
    gc.add_argument("--host-path", default=os.environ.get("MODELDEPLOY_CACHE_HOST_PATH"),
                    help="the node directory mounted at --root; only ModelDeployments "
                         "caching there get this node's report (env MODELDEPLOY_CACHE_HOST_PATH)")
    gc.add_argument("--claim", default=os.environ.get("MODELDEPLOY_CACHE_CLAIM"),
                    help="the PersistentVolumeClaim mounted at --root; only ModelDeployments "
                         "caching on it get the report, made as node pvc/CLAIM "
                         "(env MODELDEPLOY_CACHE_CLAIM)")
    gc.add_argument("--namespace", default=os.environ.get("MODELDEPLOY_NAMESPACE"),
                    help="read only this namespace's ModelDeployments (a claim's collector, "
                         "whose Role is namespaced; env MODELDEPLOY_NAMESPACE)")
    gc.add_argument("--min-age", type=float, default=300.0,
                    help="seconds a version must have gone unused before it is removed")
    gc.add_argument("--loop", action="store_true", help="run a pass every --interval seconds")
    gc.add_argument("--interval", type=float, default=60.0, help="seconds between passes")
    gc.add_argument("--references", type=Path, default=None,
                    help="read the reference set from this JSON file instead of the API server")
    return parser


def _cache_gc(args: argparse.Namespace) -> int:
    from modeldeploy_runtime import collector

    root = Path(args.root)
    if args.references is not None:
        def step() -> object:
            removed = collector.run_offline(root, args.references, args.min_age)
            for item in removed:
                print(f"removed {item.name}/{item.version} ({item.bytes} bytes)", flush=True)
            return removed
    else:
        from modeldeploy_runtime.kubeapi import InCluster

        api = InCluster(namespace=args.namespace)
        node = args.node or (f"pvc/{args.claim}" if args.claim else os.uname().nodename)
        scope = collector.Scope(host_path=args.host_path, claim=args.claim)

        def step() -> object:
            return collector.run_pass(api, root, node, args.min_age, scope)

    if args.loop:
        collector.loop(step, args.interval)  # returns only by a signal
    else:
        step()
    return 0


def _process_age() -> float:
    """Seconds since this process started (Linux /proc), so time-to-ready counts
    interpreter start-up too; 0.0 where /proc is unavailable."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, starttime, counted after the ")"
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, since_boot - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _fail(args: argparse.Namespace, reason: str) -> int:
    log.error("%s failed: %s", args.command, reason)
    termination.write_reason(args.termination_log, reason)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    started = time.monotonic() - _process_age()
    args = _parser().parse_args(argv)
    imports = None
    if args.command == "serve":
        # First thing: torch takes seconds to import, overlap it with everything else.
        from modeldeploy_runtime.preload import Imports

        imports = Imports()
    logging.basicConfig(
        level=os.environ.get("MODELDEPLOY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    from modeldeploy_runtime.config import load_config
    from modeldeploy_runtime.errors import RuntimeFailure

    if args.command == "cache":
        try:
            return _cache_gc(args)
        except RuntimeFailure as error:
            log.error("cache gc failed: %s", error)
            return 1
    try:
        config = load_config(args.config)
        root = Path(args.cache_root or config.cache.path)
        if args.command == "fetch":
            from modeldeploy_runtime import deadlines
            from modeldeploy_runtime.fetch import fetch

            clock = deadlines.StageClock(config.stage_deadline_seconds,
                                         deadlines.exit_on_overrun(args.termination_log))
            clock.enter("fetch")
            try:
                result = fetch(config, root)
            finally:
                clock.finish()
            revision = f", revision {result.revision}" if result.revision else ""
            print(f"{'hit' if result.hit else 'fetched'} {result.entry} "
                  f"({result.bytes} bytes, {result.seconds:.2f} s{revision})", flush=True)
            return 0
        from modeldeploy_runtime import cache
        from modeldeploy_runtime.runner import serve

        assert imports is not None
        entry = cache.entry_dir(root, config.model.name, config.model.version)
        # Held until the process exits: the cache collector never removes an open version.
        with cache.in_use(entry):
            cache.touch_used(entry)
            code = serve(config, root, args.host, args.port, args.termination_log, started,
                         imports)
    except RuntimeFailure as error:
        return _fail(args, termination.message(error.reason, str(error)))
    logging.shutdown()
    sys.stdout.flush()
    # The load thread may still be inside torch after SIGTERM; do not wait for it.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
