"""A local cluster's control plane as background processes: etcd, kube-apiserver,
controller-manager and scheduler (built by `make binaries`), their certificates, kubeconfigs
and state file, started, health-checked and stopped by pid.

`ControlPlane` is the base of `realnode.RealNodeCluster`, which adds the node (containerd,
kubelet, kube-proxy, CoreDNS), says where each component runs and how its health is read.
State, certificates, logs and the admin kubeconfig live in the subclass's state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from modeldeploy_e2e import paths, pki, processes
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.s3 import free_port

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class ClusterError(RuntimeError):
    """A component failed to start or become healthy; the message names its log file."""


class Ports(BaseModel):
    """Loopback ports chosen at the first start and kept, so kubeconfigs stay valid."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


class ClusterState(BaseModel):
    """The on-disk record (`state.json`) of a local cluster's ports and process ids."""

    ports: Ports
    pids: dict[str, int] = Field(default_factory=dict)
    node_name: str = "modeldeploy-node"


def _kubeconfig(server: str, ca: Path, client: pki.KeyPair, user: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert),
                                          "client-key": str(client.key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return yaml.safe_dump(config, sort_keys=False)


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ControlPlane:
    """Start, inspect and stop a local cluster whose state lives in `state_dir`: the control
    plane here, the node's components and every health check in a subclass."""

    components: tuple[str, ...] = COMPONENTS
    # What the CLI calls it, and how long `up` waits for every component by default.
    label = "cluster"
    start_timeout = 180.0
    # Where the API server listens and what it advertises (the `kubernetes` Service's
    # endpoint); kubeconfigs name LOOPBACK either way.
    bind_address = LOOPBACK
    advertise_address = LOOPBACK

    def __init__(
        self,
        state_dir: Path,
        *,
        extended_resources: dict[str, str],
        pod_cidr: str,
    ) -> None:
        self.pod_cidr = pod_cidr
        self.state_dir = Path(state_dir)
        self.pki_dir = self.state_dir / "pki"
        self.log_dir = self.state_dir / "logs"
        self.extended_resources = extended_resources

    # -- paths and state -------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters) for kubectl, helm and tests."""
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def load_state(self) -> ClusterState | None:
        """Return the recorded state, or None before the first start."""
        if not self.state_file.exists():
            return None
        return ClusterState.model_validate_json(self.state_file.read_text())

    def _save_state(self, state: ClusterState) -> None:
        self.state_file.write_text(state.model_dump_json(indent=2))

    def env(self) -> dict[str, str]:
        """Environment for tools run against this cluster: PATH and KUBECONFIG."""
        return {**os.environ, "PATH": paths.harness_path(), "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run .cache/bin/kubectl against this cluster; raise with its stderr when check fails."""
        result = subprocess.run(
            [str(paths.binary("kubectl")), *args], capture_output=True, text=True,
            input=input, env=self.env(), timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # -- lifecycle -------------------------------------------------------------------
    def running(self) -> dict[str, bool]:
        """Which components have a live recorded process."""
        state = self.load_state()
        pids = state.pids if state else {}
        return {name: name in pids and processes.alive(pids[name], self._hint(name))
                for name in self.components}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize up/down between processes (parallel test sessions share one cluster)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(self, timeout: float | None = None) -> None:
        """Start every component that is not running and wait until the node is Ready
        (within `timeout` seconds, the class's `start_timeout` when None)."""
        with self._locked():
            self._up(self.start_timeout if timeout is None else timeout)

    def _up(self, timeout: float) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        if state is None:
            state = ClusterState(ports=Ports(
                etcd_client=free_port(), etcd_peer=free_port(), apiserver=free_port(),
                controller_manager=free_port(), scheduler=free_port(),
            ))
        self._write_pki_and_kubeconfigs(state)
        deadline = time.monotonic() + timeout
        for name in self.components:
            if not self.running()[name]:
                self._prepare(name, state)
                state.pids[name] = self._spawn(name, self._command(name, state))
                self._save_state(state)
            self._wait_healthy(name, state, deadline)
            self._after_healthy(name, state)
        self._save_state(state)

    def _prepare(self, name: str, state: ClusterState) -> None:
        """Before a component starts (its files, what it needs in place)."""

    def _after_healthy(self, name: str, state: ClusterState) -> None:
        """After a component is healthy (each start, also when it was already running)."""
        if name == "kube-apiserver":
            self._allow_node_events()

    def _before_stop(self, name: str, state: ClusterState) -> None:
        """Before a running component is stopped."""

    def _allow_node_events(self) -> None:
        """Let nodes post Events: the Node authorizer has no opinion on them and the
        built-in system:node role is bound to nobody."""
        client = KubeClient.from_kubeconfig(self.kubeconfig)
        name = "modeldeploy:node-events"
        objects = [
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                           "verbs": ["create", "patch", "update"]}]}),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": "system:nodes"}]}),
        ]
        for path, body in objects:
            try:
                client.create(path, body)
            except KubeError as error:
                if error.status != 409:
                    raise ClusterError(f"RBAC for node events not created: {error}") from error

    def down(self, grace: float = 15.0) -> list[str]:
        """Stop every recorded component (the node's first); return the names stopped."""
        with self._locked():
            return self._down(grace)

    def _down(self, grace: float) -> list[str]:
        state = self.load_state()
        if state is None:
            return []
        stopped: list[str] = []
        for name in reversed(self.components):
            pid = state.pids.get(name)
            if pid is not None and processes.alive(pid, self._hint(name)):
                self._before_stop(name, state)
                processes.terminate_group(pid, grace)
                stopped.append(name)
            state.pids.pop(name, None)
        self._save_state(state)
        return stopped

    # -- internals -------------------------------------------------------------------
    def _write_pki_and_kubeconfigs(self, state: ClusterState) -> None:
        ca = pki.ensure_ca(self.pki_dir)
        pki.ensure_service_account_keys(self.pki_dir)
        pki.ensure_leaf(
            self.pki_dir, ca, "apiserver", pki.subject("kube-apiserver"),
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ips=tuple(dict.fromkeys((LOOPBACK, KUBERNETES_SERVICE_IP, self.advertise_address))),
        )
        pki.ensure_leaf(self.pki_dir, ca, "kubelet", pki.subject(f"system:node:{state.node_name}"),
                        dns_names=(state.node_name, "localhost"),
                        ips=tuple(dict.fromkeys((LOOPBACK, self.advertise_address))))
        pki.ensure_leaf(self.pki_dir, ca, "apiserver-kubelet-client",
                        pki.subject("kube-apiserver-kubelet-client", ("system:masters",)))
        server = f"https://{LOOPBACK}:{state.ports.apiserver}"
        identities = {
            "kubeconfig": ("admin", pki.subject("kubernetes-admin", ("system:masters",))),
            "controller-manager.kubeconfig": (
                "controller-manager", pki.subject("system:kube-controller-manager")),
            "scheduler.kubeconfig": ("scheduler", pki.subject("system:kube-scheduler")),
            "node.kubeconfig": (
                "node", pki.subject(f"system:node:{state.node_name}", ("system:nodes",))),
        }
        identities.update(self._extra_identities())
        for filename, (name, subj) in identities.items():
            pair = pki.ensure_leaf(self.pki_dir, ca, name, subj)
            (self.state_dir / filename).write_text(_kubeconfig(server, ca.cert, pair, name))

    def _command(self, name: str, state: ClusterState) -> list[str]:
        ports, d, p = state.ports, self.state_dir, self.pki_dir
        etcd_url = f"http://{LOOPBACK}:{ports.etcd_client}"
        peer_url = f"http://{LOOPBACK}:{ports.etcd_peer}"
        if name == "etcd":
            return [str(paths.binary("etcd")), "--name=local", f"--data-dir={d / 'etcd'}",
                    f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=local={peer_url}", "--log-level=warn",
                    # A throwaway test store: durability is not worth the 2-core fsync cost.
                    "--unsafe-no-fsync"]
        if name == "kube-apiserver":
            return [str(paths.binary("kube-apiserver")), f"--etcd-servers={etcd_url}",
                    f"--bind-address={self.bind_address}",
                    f"--advertise-address={self.advertise_address}",
                    f"--secure-port={ports.apiserver}",
                    f"--tls-cert-file={p / 'apiserver.crt'}",
                    f"--tls-private-key-file={p / 'apiserver.key'}",
                    f"--client-ca-file={p / 'ca.crt'}",
                    # Controllers read this CA from a ConfigMap; unset, they log errors forever.
                    f"--requestheader-client-ca-file={p / 'ca.crt'}",
                    "--requestheader-allowed-names=front-proxy-client",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    f"--service-account-key-file={p / 'sa.pub'}",
                    f"--service-account-signing-key-file={p / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=Node,RBAC",
                    # kubectl logs and exec: the API server calls the kubelet.
                    f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                    f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                    f"--kubelet-certificate-authority={p / 'ca.crt'}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--enable-admission-plugins=NodeRestriction",
                    "--allow-privileged=true", "--profiling=false", "--v=1"]
        kubeconfig_auth = [f"--bind-address={LOOPBACK}", "--leader-elect=false",
                           f"--cert-dir={d / 'certs' / name}", "--profiling=false", "--v=1"]
        if name == "kube-controller-manager":
            kc = str(d / "controller-manager.kubeconfig")
            return [str(paths.binary("kube-controller-manager")), f"--kubeconfig={kc}",
                    f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                    f"--secure-port={ports.controller_manager}", *kubeconfig_auth,
                    f"--service-account-private-key-file={p / 'sa.key'}",
                    f"--root-ca-file={p / 'ca.crt'}",
                    f"--cluster-signing-cert-file={p / 'ca.crt'}",
                    f"--cluster-signing-key-file={p / 'ca.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--use-service-account-credentials=true"]
        if name == "kube-scheduler":
            kc = str(d / "scheduler.kubeconfig")
            return [str(paths.binary("kube-scheduler")), f"--kubeconfig={kc}",
                    f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                    f"--secure-port={ports.scheduler}", *kubeconfig_auth]
        raise ClusterError(f"no command for component {name!r}")

    def _spawn(self, name: str, command: list[str]) -> int:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
            process = subprocess.Popen(
                [*self._prefix(name), *command], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PATH": paths.harness_path()},
                # Own session: the cluster outlives `make cluster-up` and Ctrl-C in a shell.
                start_new_session=True, cwd=self.state_dir,
            )
        return process.pid

    def _extra_identities(self) -> dict[str, tuple[str, str]]:
        """More kubeconfigs to write: file name -> (key pair name, subject)."""
        return {}

    def _prefix(self, name: str) -> list[str]:
        """What a component's command runs under (nothing here; a namespace elsewhere)."""
        return []

    def _hint(self, name: str) -> str:
        """A string in the component's command line (tells a live pid from a reused one)."""
        return str(paths.BIN_DIR / name)

    def _wait_healthy(self, name: str, state: ClusterState, deadline: float) -> None:
        checks = self._health_checks(state)
        while time.monotonic() < deadline:
            # Whether it still runs, not whose it is: `running()` already told a live pid
            # from a reused one, or `_up` just spawned it, and while nsenter execs the
            # component its command line reads empty for a moment.
            if not processes.running(state.pids[name]):
                raise ClusterError(f"{name} exited during start; see {self.log_dir / name}.log")
            if checks[name]():
                return
            time.sleep(0.3)
        raise ClusterError(f"{name} not healthy in time; see {self.log_dir / name}.log")

    def _health_checks(self, state: ClusterState) -> dict[str, Callable[[], bool]]:
        """Each component's readiness check; where they run decides how they are read."""
        raise NotImplementedError

    def _workloads_ready(self, state: ClusterState) -> Callable[[], bool]:
        """The node is Ready and the default ServiceAccount exists (pods can be made)."""
        return lambda: self._node_ready(state.node_name) and self.kubectl(
            "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def _node_ready(self, node_name: str) -> bool:
        result = self.kubectl(
            "get", "node", node_name, "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        return result.returncode == 0 and result.stdout.strip() == "True"


def cli(argv: list[str] | None, make: Callable[[Path], ControlPlane], prog: str,
        default_state_dir: Path) -> int:
    """`up | down | status` for a cluster class."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=default_state_dir)
    args = parser.parse_args(argv)
    cluster = make(args.state_dir)
    if args.action == "up":
        started = time.monotonic()
        try:
            cluster.up()
        except (ClusterError, FileNotFoundError) as error:
            print(f"{cluster.label} up failed: {error}", file=sys.stderr)
            return 1
        print(f"{cluster.label} up in {time.monotonic() - started:.1f}s; to use it:\n"
              f"  export KUBECONFIG={cluster.kubeconfig} PATH={paths.BIN_DIR}:$PATH")
    elif args.action == "down":
        print("stopped: " + (", ".join(cluster.down()) or "nothing was running"))
    else:
        print(json.dumps(cluster.running(), indent=2))
    return 0
