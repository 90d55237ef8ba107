"""CLI: python -m modeldeploy_e2e.nodeagent --kubeconfig ... --node-name ..."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import types
import urllib.parse
from pathlib import Path

from modeldeploy_e2e import paths
from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.nodeagent import logserver
from modeldeploy_e2e.nodeagent.agent import NodeAgent
from modeldeploy_e2e.nodeagent.ipam import PodIPs
from modeldeploy_e2e.nodeagent.process import mount_namespaces_work
from modeldeploy_e2e.nodeagent.volumes import VolumeBuilder
from modeldeploy_e2e.nodeagent.worker import NodeContext
from modeldeploy_e2e.provisioner import Provisioner


def _resource(text: str) -> tuple[str, str]:
    name, sep, amount = text.partition("=")
    if not sep or not name or not amount:
        raise argparse.ArgumentTypeError(
            f"--extended-resource {text!r} must look like nvidia.com/gpu=2")
    return name, amount


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_e2e.nodeagent")
    parser.add_argument("--kubeconfig", type=Path, required=True,
                        help="credentials of system:node:<node-name>")
    parser.add_argument("--node-name", default="modeldeploy-node")
    parser.add_argument("--state-dir", type=Path, default=paths.CLUSTER_DIR / "node")
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="32Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument("--extended-resource", type=_resource, action="append", default=[],
                        help="NAME=COUNT, repeatable, e.g. nvidia.com/gpu=2")
    parser.add_argument("--pod-cidr", default="127.244.0.0/16")
    parser.add_argument("--backoff-base", type=float, default=10.0,
                        help="first CrashLoopBackOff delay in seconds (the kubelet's is 10)")
    parser.add_argument("--provisioner-kubeconfig", type=Path, default=None,
                        help="credentials allowed to create PersistentVolumes; when given, "
                             "pending claims get hostPath volumes")
    parser.add_argument("--kubelet-port", type=int, default=0,
                        help="serve /containerLogs (kubectl logs) on 127.0.0.1:PORT; 0 = off")
    parser.add_argument("--serving-cert", type=Path, help="TLS certificate for --kubelet-port")
    parser.add_argument("--serving-key", type=Path, help="its key")
    parser.add_argument("--client-ca", type=Path, help="CA of the API server's client cert")
    parser.add_argument("--no-mount-namespaces", action="store_true",
                        help="rewrite mountPath prefixes instead of bind-mounting volumes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    client = KubeClient.from_kubeconfig(args.kubeconfig)
    server = urllib.parse.urlsplit(client.endpoint.server)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    use_namespaces = not args.no_mount_namespaces and mount_namespaces_work()
    if not use_namespaces:
        logging.warning("mount namespaces unavailable: rewriting mountPath prefixes instead "
                        "(MODELDEPLOY_PATH_MAP is set in every container)")
    ctx = NodeContext(
        client=client, node_name=args.node_name, host_ip="127.0.0.1", state_dir=args.state_dir,
        ips=PodIPs(args.pod_cidr, args.state_dir / "pod-ips.json"),
        volumes=VolumeBuilder(client, args.state_dir / "pvc"),
        use_namespaces=use_namespaces, backoff_base=args.backoff_base,
        api_host=server.hostname or "127.0.0.1", api_port=server.port or 443,
    )
    capacity = {"cpu": args.cpu, "memory": args.memory, "pods": args.pods,
                "ephemeral-storage": "100Gi", **dict(args.extended_resource)}
    agent = NodeAgent(ctx, capacity, kubelet_port=args.kubelet_port)
    if args.kubelet_port:
        if not (args.serving_cert and args.serving_key and args.client_ca):
            parser.error("--kubelet-port needs --serving-cert, --serving-key and --client-ca")
        logserver.serve(agent.find_logs, args.kubelet_port, args.serving_cert,
                        args.serving_key, args.client_ca)

    def stop(signum: int, frame: types.FrameType | None) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.provisioner_kubeconfig is not None:
        provisioner = Provisioner(KubeClient.from_kubeconfig(args.provisioner_kubeconfig),
                                  args.state_dir / "pv", agent.stop)
        threading.Thread(target=provisioner.run, name="provisioner", daemon=True).start()
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
