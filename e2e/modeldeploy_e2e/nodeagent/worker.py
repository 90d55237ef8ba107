"""One thread per pod: volumes, init containers, containers, probes, restarts, status,
graceful deletion — the part of the kubelet this harness needs."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeldeploy_e2e import paths
from modeldeploy_e2e.kube import KubeClient, KubeError
from modeldeploy_e2e.nodeagent import podspec, status
from modeldeploy_e2e.nodeagent.ipam import PodIPs
from modeldeploy_e2e.nodeagent.podspec import ConfigError, Mount, PodFacts
from modeldeploy_e2e.nodeagent.probes import ProbeTracker, exec_probe, http_get, tcp_socket
from modeldeploy_e2e.nodeagent.process import ContainerProcess, Exit, MemoryCgroup, rewrite_paths
from modeldeploy_e2e.nodeagent.status import ContainerRecord
from modeldeploy_e2e.nodeagent.volumes import VolumeBuilder

JsonDict = dict[str, Any]
log = logging.getLogger(__name__)
TICK = 0.1


def now_iso() -> str:
    """The API's timestamp format, in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker shares: API client, node identity, settings."""

    client: KubeClient
    node_name: str
    host_ip: str
    state_dir: Path
    ips: PodIPs
    volumes: VolumeBuilder
    use_namespaces: bool
    backoff_base: float
    api_host: str
    api_port: int


class _Deleted(Exception):
    """The pod is being deleted (or is gone); unwind to the stop path."""


class Container:
    """A container of the pod: spec, status record, process and probes."""

    def __init__(self, spec: JsonDict) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.record = ContainerRecord(self.name, spec.get("image", ""))
        self.process: ContainerProcess | None = None
        self.probes: dict[str, ProbeTracker] = {}
        self.restart_at = 0.0
        self.started_at = ""
        self.exec_env: dict[str, str] = {}
        self.ever_started = False

    def probe_spec(self, kind: str) -> JsonDict | None:
        """The container's startupProbe / readinessProbe / livenessProbe."""
        spec: JsonDict | None = self.spec.get(f"{kind}Probe")
        return spec


class PodWorker(threading.Thread):
    """Runs one pod until it is deleted."""

    def __init__(self, ctx: NodeContext, pod: JsonDict) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.dir = ctx.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.init = [Container(c) for c in pod["spec"].get("initContainers", [])]
        self.main = [Container(c) for c in pod["spec"].get("containers", [])]
        self.gone = threading.Event()
        self.stopping = threading.Event()
        self.pod_ip: str | None = None
        self.start_time = now_iso()
        self.init_failed = False
        self.terminal = False
        self.volume_dirs: dict[str, Path] = {}
        self._published: JsonDict | None = None
        self._lock = threading.Lock()

    # -- inputs from the agent loop ----------------------------------------------------
    def update(self, pod: JsonDict) -> None:
        """Hand the worker the latest version of its pod."""
        with self._lock:
            self.pod = pod

    @property
    def deleting(self) -> bool:
        """Whether the pod is gone, marked for deletion, or the agent is stopping."""
        with self._lock:
            marked = bool(self.pod["metadata"].get("deletionTimestamp"))
        return marked or self.gone.is_set() or self.stopping.is_set()

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except _Deleted:
            pass
        except Exception:
            log.exception("pod worker %s failed", self.name)
        finally:
            self._finish()

    def _run(self) -> None:
        meta = self.pod["metadata"]
        self.pod_ip = self.ctx.ips.allocate(self.uid)
        facts = PodFacts(self.pod_ip, self.ctx.host_ip, self.ctx.node_name)
        while True:
            self._check_deleted()
            try:
                self.volume_dirs = self.ctx.volumes.build(self.pod, self.dir, facts)
                break
            except ConfigError as error:
                self._waiting_all("CreateContainerConfigError", str(error))
                self._sleep(2.0)
        log.info("pod %s/%s ip %s", meta["namespace"], meta["name"], self.pod_ip)
        for container in self.init:
            self._run_init(container, facts)
            if self.init_failed:
                self.publish()
                self._idle_until_deleted()
        for container in self.main:
            container.record.state = {"waiting": {"reason": "ContainerCreating"}}
        while True:
            self._check_deleted()
            for container in self.main:
                self._supervise(container, facts)
            policy = self.pod["spec"].get("restartPolicy", "Always")
            self.terminal = policy != "Always" and all(
                c.process is None and "terminated" in c.record.state and c.restart_at == 0
                for c in self.main)
            self.publish()
            self._sleep(TICK)

    def _run_init(self, container: Container, facts: PodFacts) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            self._check_deleted()
            if container.process is None and time.monotonic() >= container.restart_at:
                self._start(container, facts)
            if container.process is not None:
                exit_ = container.process.poll()
                if exit_ is not None:
                    self._terminated(container, exit_)
                    if exit_.exit_code == 0:
                        self.publish()
                        return
                    if policy == "Never":
                        self.init_failed = True
                        return
                    self._schedule_restart(container)
            self.publish()
            self._sleep(TICK)

    def _supervise(self, container: Container, facts: PodFacts) -> None:
        now = time.monotonic()
        if container.process is None:
            if container.restart_at and now >= container.restart_at:
                if container.ever_started:
                    container.record.restart_count += 1
                self._start(container, facts)
            elif not container.restart_at and "terminated" not in container.record.state:
                self._start(container, facts)
            return
        exit_ = container.process.poll()
        if exit_ is not None:
            self._terminated(container, exit_)
            policy = self.pod["spec"].get("restartPolicy", "Always")
            if status.should_restart(policy, exit_.exit_code):
                self._schedule_restart(container)
            return
        self._probe(container, now)

    def _probe(self, container: Container, now: float) -> None:
        assert container.process is not None
        record = container.record
        startup = container.probes.get("startup")
        if startup is not None and not startup.passed:
            if startup.due(now):
                startup.record(self._probe_once(container, startup), now)
                if startup.failed_out and not startup.passed:
                    self._kill_for_probe(container, "startup")
                    return
            record.started = startup.passed
            if not startup.passed:
                return
        record.started = True
        liveness = container.probes.get("liveness")
        if liveness is not None and liveness.due(now):
            liveness.record(self._probe_once(container, liveness), now)
            if liveness.failed_out:
                self._kill_for_probe(container, "liveness")
                return
        readiness = container.probes.get("readiness")
        if readiness is None:
            record.ready = True
        elif readiness.due(now):
            readiness.record(self._probe_once(container, readiness), now)
            record.ready = readiness.passed

    def _probe_once(self, container: Container, tracker: ProbeTracker) -> bool:
        spec, ip = tracker.spec, self.pod_ip or "127.0.0.1"
        if "httpGet" in spec:
            return http_get(spec["httpGet"], ip, container.spec, tracker.timeout)
        if "tcpSocket" in spec:
            return tcp_socket(spec["tcpSocket"], ip, container.spec, tracker.timeout)
        if "exec" in spec and container.process is not None:
            return exec_probe(container.process.nsenter_prefix(), spec["exec"]["command"],
                              container.exec_env, tracker.timeout)
        return False

    def _kill_for_probe(self, container: Container, kind: str) -> None:
        assert container.process is not None
        log.info("%s: container %s failed its %s probe; restarting", self.name, container.name,
                 kind)
        self.event(container, "Unhealthy", f"{kind.capitalize()} probe failed", warning=True)
        self.event(container, "Killing", f"Container {container.name} failed {kind} probe, "
                   "will be restarted")
        exit_ = container.process.stop(self._grace())
        self._terminated(container, exit_)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if status.should_restart(policy, exit_.exit_code):
            self._schedule_restart(container)

    # -- container start / exit ----------------------------------------------------------
    def _start(self, container: Container, facts: PodFacts) -> None:
        spec, record = container.spec, container.record
        meta = self.pod["metadata"]
        try:
            env = podspec.container_env(self.pod, spec, facts, self.ctx.volumes.secrets,
                                        self.ctx.volumes.config_maps)
            argv = podspec.container_argv(spec, env)
            mounts = podspec.volume_mounts(spec, self.volume_dirs)
        except ConfigError as error:
            if record.state.get("waiting", {}).get("message") != str(error):
                self.event(container, "Failed", f"Error: {error}", warning=True)
            record.state = {"waiting": {"reason": "CreateContainerConfigError",
                                        "message": str(error)}}
            container.restart_at = time.monotonic() + 2.0
            return
        cdir = self.dir / "containers" / container.name
        cdir.mkdir(parents=True, exist_ok=True)
        termination_log = cdir / "termination-log"
        termination_log.write_bytes(b"")
        mounts.append(Mount(termination_log, podspec.termination_message_path(spec), False,
                            is_file=True))
        base = {"PATH": paths.harness_path(), "HOME": "/root", "HOSTNAME": meta["name"],
                "KUBERNETES_SERVICE_HOST": self.ctx.api_host,
                "KUBERNETES_SERVICE_PORT": str(self.ctx.api_port)}
        full_env = {**base, **env}
        workdir = spec.get("workingDir") or str(cdir)
        if not self.ctx.use_namespaces:
            argv = rewrite_paths(argv, mounts)
            full_env = dict(zip(full_env, rewrite_paths(list(full_env.values()), mounts),
                                strict=True))
            full_env["MODELDEPLOY_PATH_MAP"] = ":".join(f"{m.target}={m.source}" for m in mounts)
            workdir = rewrite_paths([workdir], mounts)[0]
            Path(workdir).mkdir(parents=True, exist_ok=True)
        resolved = shutil.which(argv[0], path=full_env["PATH"]) if "/" not in argv[0] else argv[0]
        if resolved is None:
            record.state = {"waiting": {"reason": "RunContainerError", "message":
                            f"command {argv[0]!r} not found on PATH {full_env['PATH']}"}}
            container.restart_at = time.monotonic() + self._backoff(container)
            return
        argv[0] = resolved
        cgroup = None
        limit = spec.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            cgroup = MemoryCgroup.create(f"{self.uid}-{container.name}",
                                         int(podspec.parse_quantity(limit)))
        container.process = ContainerProcess(
            argv, full_env, mounts, workdir, cdir / "output.log",
            use_namespace=self.ctx.use_namespaces, cgroup=cgroup)
        container.exec_env = full_env
        container.started_at = now_iso()
        container.restart_at = 0.0
        started = time.monotonic()
        container.probes = {kind: ProbeTracker(probe, started) for kind in
                            ("startup", "readiness", "liveness")
                            if (probe := container.probe_spec(kind)) is not None}
        record.state = {"running": {"startedAt": container.started_at}}
        record.container_id = f"modeldeploy://{container.process.pid}"
        record.ready = False
        record.started = "startup" not in container.probes
        container.ever_started = True
        self.event(container, "Started", f"Started container {container.name}")

    def _terminated(self, container: Container, exit_: Exit) -> None:
        record = container.record
        cdir = self.dir / "containers" / container.name
        message = ""
        with contextlib.suppress(OSError):
            message = (cdir / "termination-log").read_text(errors="replace")[-4096:]
        if not message and container.spec.get(
                "terminationMessagePolicy") == "FallbackToLogsOnError" and exit_.exit_code != 0:
            try:
                lines = (cdir / "output.log").read_text(errors="replace").splitlines()[-80:]
                message = "\n".join(lines)[-2048:]
            except OSError:
                pass
        terminated: JsonDict = {"exitCode": exit_.exit_code, "reason": exit_.reason,
                                "startedAt": container.started_at, "finishedAt": now_iso(),
                                "containerID": record.container_id}
        if exit_.signal:
            terminated["signal"] = exit_.signal
        if message:
            terminated["message"] = message
        record.state = {"terminated": terminated}
        record.ready = False
        record.started = False
        container.process = None
        container.probes = {}

    def _backoff(self, container: Container) -> float:
        count = container.record.restart_count
        return 0.0 if count == 0 else status.backoff_seconds(count - 1, self.ctx.backoff_base)

    def _schedule_restart(self, container: Container) -> None:
        delay = self._backoff(container)
        record = container.record
        record.last_state = dict(record.state)
        if delay > 0:
            self.event(container, "BackOff",
                       f"Back-off restarting failed container {container.name} in pod "
                       f"{self.pod['metadata']['name']}", warning=True)
            record.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container="
                           f"{container.name} pod={self.pod['metadata']['name']}"}}
        container.restart_at = time.monotonic() + max(delay, 0.001)

    # -- deletion ------------------------------------------------------------------------
    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _check_deleted(self) -> None:
        if self.deleting:
            raise _Deleted

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._check_deleted()
            time.sleep(min(TICK, max(0.0, end - time.monotonic())))

    def _idle_until_deleted(self) -> None:
        while True:
            self._sleep(1.0)

    def _finish(self) -> None:
        grace = 2.0 if self.gone.is_set() or self.stopping.is_set() else self._grace()
        running = [c for c in self.init + self.main if c.process is not None]
        stoppers = [threading.Thread(target=self._stop_one, args=(c, grace)) for c in running]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        if self.stopping.is_set() and not self.gone.is_set():
            return  # agent shutdown: the pod stays; a restarted agent takes it up again
        if not self.gone.is_set():
            meta = self.pod["metadata"]
            try:
                self.ctx.client.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
            except KubeError as error:
                if error.status not in (404, 409):
                    log.warning("could not remove pod %s: %s", self.name, error)
        self.ctx.ips.release(self.uid)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    def _stop_one(self, container: Container, grace: float) -> None:
        assert container.process is not None
        if not self.stopping.is_set():
            self.event(container, "Killing", f"Stopping container {container.name}")
        started = time.monotonic()
        if not self.gone.is_set() and not self.stopping.is_set():
            self._pre_stop(container, grace)
        remaining = max(grace - (time.monotonic() - started), 2.0 if grace > 0 else 0.0)
        exit_ = container.process.stop(remaining)
        self._terminated(container, exit_)

    def _pre_stop(self, container: Container, grace: float) -> None:
        """Run lifecycle.preStop (sleep, exec or httpGet) within the grace period."""
        hook = (container.spec.get("lifecycle") or {}).get("preStop")
        if not hook or container.process is None:
            return
        if "sleep" in hook:
            time.sleep(min(float(hook["sleep"].get("seconds", 0)), grace))
        elif "exec" in hook:
            exec_probe(container.process.nsenter_prefix(), hook["exec"]["command"],
                       container.exec_env, grace)
        elif "httpGet" in hook:
            http_get(hook["httpGet"], self.pod_ip or "127.0.0.1", container.spec, grace)

    def kill_now(self) -> None:
        """Agent shutdown: stop processes without touching the API."""
        for container in self.init + self.main:
            if container.process is not None:
                container.process.signal_group(signal.SIGKILL)

    # -- events --------------------------------------------------------------------------
    def event(self, container: Container | None, reason: str, message: str,
              warning: bool = False) -> None:
        """Post a core/v1 Event about the pod, as the kubelet does; failures only log."""
        meta = self.pod["metadata"]
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"],
                    "name": meta["name"], "uid": self.uid}
        if container is not None:
            kind = "initContainers" if container in self.init else "containers"
            involved["fieldPath"] = f"spec.{kind}{{{container.name}}}"
        stamp = now_iso()
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": involved, "reason": reason, "message": message[:1024],
                "type": "Warning" if warning else "Normal", "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "kubelet", "host": self.ctx.node_name},
                "reportingComponent": "kubelet", "reportingInstance": self.ctx.node_name}
        try:
            self.ctx.client.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except (KubeError, OSError) as error:
            log.debug("event %s for %s not posted: %s", reason, self.name, error)

    # -- status --------------------------------------------------------------------------
    def _waiting_all(self, reason: str, message: str) -> None:
        for container in self.init + self.main:
            container.record.state = {"waiting": {"reason": reason, "message": message}}
        self.publish()

    def publish(self) -> None:
        """Write the pod status when it changed since the last write."""
        with self._lock:
            pod = self.pod
        view = status.PodView(
            restart_policy=pod["spec"].get("restartPolicy", "Always"),
            pod_ip=self.pod_ip, host_ip=self.ctx.host_ip, start_time=self.start_time,
            now=now_iso(),
            readiness_gates=tuple(g["conditionType"] for g in
                                  pod["spec"].get("readinessGates", [])),
            init_failed=self.init_failed, terminal=self.terminal)
        observed = (pod.get("status") or {}).get("conditions") or []
        # Our own last write is fresher than a pod listed before it landed.
        ours = (self._published or {}).get("conditions") or [
            c for c in observed if c["type"] in status.OWN_CONDITIONS]
        previous = [c for c in observed if c["type"] not in status.OWN_CONDITIONS] + [
            c for c in ours if c["type"] in status.OWN_CONDITIONS]
        new = status.pod_status([c.record for c in self.init], [c.record for c in self.main],
                                view, previous)
        if new == self._published:
            return
        meta = pod["metadata"]
        try:
            self.ctx.client.merge_patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"metadata": {"uid": self.uid}, "status": new})
            self._published = new
        except KubeError as error:
            if error.status == 404:
                self.gone.set()
            else:
                log.warning("status of %s not written: %s", self.name, error)
