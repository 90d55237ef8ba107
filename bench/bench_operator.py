"""Operator benchmark: overhead per upgrade, and cost at scale with 1000 ModelDeployments.

    make bench-operator        # against $KUBECONFIG, else the local cluster on the real node
                               # (started if needed, with the project's images)

1. Overhead over 5 blue-green upgrades of MiniLM (1 replica, operator-side validation on):
   time from `kubectl apply` of the new version to every endpoint of the stable Service
   answering with it, minus the slowest new pod's own time-to-ready (its /status
   `timeToReadySeconds`, process start to ready). What is left is scheduling, the
   cache fetch, the kubelet's pod start, and the operator's own reaction and validation.
   MinIO and the operator run inside the node's network namespace, as in the e2e suite.
2. Cost at scale: 1000 ModelDeployments with replicas 0 (children, no pods) created in a
   burst, then a quiet period: time to settle, CPU seconds and API requests per reconcile
   during the burst (from the operator's /metrics), and at rest CPU % of a core, API
   requests per minute and RSS, each with its ratio to the target (issue 15).
Numbers are printed, never asserted: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from modeldeploy_e2e import harness, netns, workload
from modeldeploy_e2e.opcluster import (
    Cluster,
    minio_for_pods,
    operator_cluster,
    operator_process,
    with_crds,
)
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer, free_port
from timeline import OPERATOR_STEPS, STEPS, Timeline

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def kubectl(cluster: Cluster, *args: str, input: str | None = None) -> None:
    """kubectl with the benchmark's longer bound: a 100-object apply on a busy machine."""
    cluster.kubectl(*args, input=input, timeout=300)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def counter(cluster: Cluster, metrics_url: str, name: str) -> float:
    """The sum of a Prometheus counter over all its labels (read where the operator runs)."""
    status, body = netns.http_get(cluster.netns, metrics_url)
    if status != 200:
        raise RuntimeError(f"GET {metrics_url} answered HTTP {status}")
    text = body.decode()
    return sum(float(m) for m in re.findall(
        rf'^{name}_total\{{[^}}]*\}} ([0-9.e+]+)$', text, re.M))


def reconciles(cluster: Cluster, metrics_url: str) -> float:
    return counter(cluster, metrics_url, "modeldeploy_reconciles")


def api_requests(cluster: Cluster, metrics_url: str) -> float:
    return counter(cluster, metrics_url, "modeldeploy_api_requests")


def setup_namespace(cluster: Cluster, s3: MinioServer) -> str:
    namespace = f"md-bench-{secrets.token_hex(3)}"
    kubectl(cluster, "create", "namespace", namespace)
    secret = workload.s3_secret(namespace, workload.SECRET, s3.access_key, s3.secret_key)
    kubectl(cluster, "apply", "-f", "-", input=json.dumps(secret))
    return namespace


def bench_overhead(cluster: Cluster, s3: MinioServer, upgrades: int,
                   workdir: Path) -> None:
    namespace = setup_namespace(cluster, s3)
    client = cluster.client
    name = "bench"
    strategy = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 0}}

    def manifest(version: str) -> dict[str, Any]:
        md: dict[str, Any] = workload.minilm_manifest(
            name, namespace, version=version, endpoint=s3.endpoint, replicas=1,
            strategy=strategy)
        # Every version reads the same weights; the version names the cache entry.
        md["spec"]["model"]["source"]["s3"]["prefix"] = workload.minilm_prefix("v1")
        return md

    rows = []
    splits: list[dict[str, float]] = []
    timeline = Timeline(client, namespace)
    with operator_process(cluster, [namespace], workdir / "operator-overhead.log"):
        kubectl(cluster, "apply", "-f", "-", input=json.dumps(manifest("b0")))
        workload.wait_for_status(client, namespace, name, workload.available_at("b0"), 300,
                                 "b0 Available")
        for n in range(1, upgrades + 1):
            version = f"b{n}"
            started = time.monotonic()
            kubectl(cluster, "apply", "-f", "-", input=json.dumps(manifest(version)))
            preview_ready: float | None = None
            created: float | None = None
            deadline = started + 300
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError(f"Service not serving {version} after 300s")
                if created is None and client.get(
                        f"/apis/apps/v1/namespaces/{namespace}/deployments",
                        labelSelector=f"modeldeploy.dev/version={version}").get("items"):
                    created = now
                if preview_ready is None and workload.served_versions(
                        client, namespace, f"{name}-preview", "minilm",
                        cluster.netns) == {version}:
                    preview_ready = now
                if workload.served_versions(client, namespace, name, "minilm",
                                            cluster.netns) == {version}:
                    break
                time.sleep(0.05)
            answered = time.monotonic()
            total = answered - started
            ready = [workload.runtime_status(ip, port, cluster.netns).get("timeToReadySeconds")
                     or 0.0
                     for ip, port in workload.service_endpoints(client, namespace, name)]
            slowest = max(float(r) for r in ready)
            switch = total - ((preview_ready or started) - started)
            react = (created or started) - started
            rows.append((version, total, slowest, total - slowest, switch, react))
            workload.wait_for_status(client, namespace, name, workload.available_at(version),
                                     120, f"{version} Available")
            splits.append(timeline.steps(name, version, started, answered))
    kubectl(cluster, "delete", "namespace", namespace, "--wait=false")
    print_split(splits)
    print("\n== operator overhead per blue-green upgrade (1 replica, validation on)")
    print(f"{'version':>8} {'apply->serving':>15} {'pod ready':>10} {'overhead':>9} "
          f"{'apply->Deployment':>18} {'ready->serving':>15}   (seconds)")
    for version, total, slowest, overhead, switch, react in rows:
        print(f"{version:>8} {total:15.2f} {slowest:10.2f} {overhead:9.2f} {react:18.2f} "
              f"{switch:15.2f}")
    overheads = [r[3] for r in rows]
    print(f"median overhead {statistics.median(overheads):.2f}s "
          f"(min {min(overheads):.2f}s, max {max(overheads):.2f}s) over {len(rows)} upgrades; "
          "overhead includes scheduling and the S3 fetch of the new version")
    reacts = [r[5] for r in rows]
    print(f"median apply -> candidate Deployment created {statistics.median(reacts):.2f}s "
          "(the operator noticing the spec change)")
    switches = [r[4] for r in rows]
    print(f"median candidate-ready -> stable-serving {statistics.median(switches):.2f}s "
          "(the operator noticing, validating through the preview, switching the Service)")


def print_split(splits: list[dict[str, float]]) -> None:
    """The upgrade step by step: median time from the previous step, from the watches."""
    print("\n== upgrade step by step (median over the upgrades; from watch events on arrival)")
    previous = None
    for step in STEPS:
        deltas = [s[step] - (s[previous] if previous else 0.0) for s in splits
                  if step in s and (previous is None or previous in s)]
        shown = f"{statistics.median(deltas):6.2f}s" if deltas else "   n/a"
        print(f"  {step:<34} +{shown}")
        previous = step
    own = [sum(s[b] - s[a] for a, b in OPERATOR_STEPS) for s in splits
           if all(a in s and b in s for a, b in OPERATOR_STEPS)]
    if own:
        median = statistics.median(own)
        print(f"operator's own steps (noticing the spec change; noticing readiness, validating, "
              f"switching): median {median:.2f}s vs target 0.5s: ratio {median / 0.5:.2f}")


def bench_scale(cluster: Cluster, s3: MinioServer, count: int,
                workdir: Path, quiet_seconds: float, settle_seconds: float,
                resync_seconds: float) -> None:
    namespace = setup_namespace(cluster, s3)
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    operator = operator_process(cluster, [namespace], workdir / "operator-scale.log",
                                extra_args=[f"--metrics-port={port}", "--metrics-host=127.0.0.1",
                                            f"--resync-seconds={resync_seconds}"])
    try:
        measured = _measure_scale(cluster, s3, count, quiet_seconds, namespace,
                                  operator, metrics_url, settle_seconds)
    finally:
        kubectl(cluster, "delete", "namespace", namespace, "--wait=false")
    cpu0, rss0, n0, a0, cpu1, rss1, n1, a1, cpu2, rss2, n2, a2, burst = measured
    print(f"\n== cost with {count} ModelDeployments (replicas 0: children, no pods; "
          f"resync every {resync_seconds:.0f}s)")
    burst_n = max(n1 - n0, 1)
    print(f"burst: {count} created and settled in {burst:.1f}s; {n1 - n0:.0f} reconciles, "
          f"{cpu1 - cpu0:.1f} CPU s ({1000 * (cpu1 - cpu0) / burst_n:.1f} ms per reconcile), "
          f"{a1 - a0:.0f} API requests ({(a1 - a0) / burst_n:.2f} per reconcile)")
    minutes = quiet_seconds / 60
    cpu_pct = 100 * (cpu2 - cpu1) / quiet_seconds
    per_minute = (a2 - a1) / minutes
    print(f"at rest for {quiet_seconds:.0f}s: {n2 - n1:.0f} reconciles, "
          f"{cpu2 - cpu1:.2f} CPU s, RSS {rss2:.0f} MiB (idle before: {rss0:.0f} MiB, "
          f"after the burst: {rss1:.0f} MiB)")
    print(f"at rest: CPU {cpu_pct:.2f}% of a core vs target 1%: ratio {cpu_pct / 1.0:.2f}")
    print(f"at rest: {per_minute:.1f} API requests/min vs target 10: "
          f"ratio {per_minute / 10:.2f}")
    print(f"at rest: RSS {rss2:.0f} MiB vs target 300: ratio {rss2 / 300:.2f}")


def _measure_scale(cluster: Cluster, s3: MinioServer, count: int,
                   quiet_seconds: float, namespace: str, operator: OperatorProcess,
                   metrics_url: str, settle_seconds: float) -> tuple[float, ...]:
    with operator:
        assert operator.pid is not None
        pid = operator.pid
        def sample() -> tuple[float, float, float, float]:
            return (process_cpu_seconds(pid), process_rss_mib(pid),
                    reconciles(cluster, metrics_url), api_requests(cluster, metrics_url))

        cpu0, rss0, n0, a0 = sample()
        items = [workload.minilm_manifest(f"md-{i:04d}", namespace, version="v1",
                                          endpoint=s3.endpoint, replicas=0, validation=False)
                 for i in range(count)]
        started = time.monotonic()
        # In chunks: one kubectl apply of 1000 objects outlasts its timeout on a busy machine.
        for chunk in range(0, count, 100):
            kubectl(cluster, "apply", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": items[chunk:chunk + 100]}))

        def all_settled() -> bool:
            listing = cluster.client.get(workload.md_path(namespace))
            phases = [(i.get("status") or {}).get("phase") for i in listing.get("items", [])]
            # replicas 0 settles as Pending (nothing to validate yet): any phase will do.
            return len(phases) == count and all(p is not None for p in phases)

        workload.wait_until(all_settled, 900, f"{count} ModelDeployments settled", interval=1.0)
        burst = time.monotonic() - started
        # Let the burst's tail (queued passes, their 1 s look-agains) drain before the quiet
        # period starts: "settled" above only means every resource has a phase.
        time.sleep(settle_seconds)
        cpu1, rss1, n1, a1 = sample()
        time.sleep(quiet_seconds)
        cpu2, rss2, n2, a2 = sample()
    return cpu0, rss0, n0, a0, cpu1, rss1, n1, a1, cpu2, rss2, n2, a2, burst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upgrades", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quiet-seconds", type=float, default=300.0)
    parser.add_argument("--settle-seconds", type=float, default=120.0,
                        help="wait after every resource has a phase, before measuring rest")
    parser.add_argument("--resync-seconds", type=float, default=600.0,
                        help="the operator's --resync-seconds (shorter: more resyncs at rest)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    handle = harness.connect()
    try:
        cluster = with_crds(operator_cluster(handle))
        with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
            workdir = Path(tmp)
            with minio_for_pods(cluster, workdir / "minio") as s3:
                workload.upload_minilm(s3, ["v1"])
                if not args.skip_overhead:
                    bench_overhead(cluster, s3, args.upgrades, workdir)
                if not args.skip_scale:
                    bench_scale(cluster, s3, args.count, workdir, args.quiet_seconds,
                                args.settle_seconds, args.resync_seconds)
    finally:
        handle.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
