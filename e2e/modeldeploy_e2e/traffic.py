"""Send requests to a Service as any client in the cluster does: to its ClusterIP, from
inside the node's network namespace (`netns=`; this process's own namespace when None),
so kube-proxy's rules pick the endpoint. The report counts answers by what they say
(`classify`), since the ClusterIP hides which pod answered.

`ready_endpoints` gives the pods behind a Service by the EndpointSlice controller's own
rule (selector match, a pod IP, the Ready condition True, no deletionTimestamp, not
finished), for tests that ask each pod something (its /status) rather than send traffic.

    with Traffic(client, "default", "web", path="/") as traffic:
        ...  # roll the Deployment
    assert traffic.report.failures == 0, traffic.report.summary()
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from modeldeploy_e2e import netevidence
from modeldeploy_e2e.kube import KubeClient
from modeldeploy_e2e.netns import HTTPConnection, probe_ports

JsonDict = dict[str, Any]


def label_selector(service: JsonDict) -> str:
    """The Service's selector as a label-selector query string."""
    selector = service.get("spec", {}).get("selector") or {}
    if not selector:
        name = service.get("metadata", {}).get("name")
        raise ValueError(f"Service {name!r} has no selector; its endpoints cannot be derived")
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def _is_ready(pod: JsonDict) -> bool:
    status = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or not status.get("podIP"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _target_port(pod: JsonDict, target: int | str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def ready_endpoints(service: JsonDict, pods: list[JsonDict], port: int | str | None
                    ) -> list[tuple[str, int]]:
    """(address, port) of every ready, non-terminating pod behind the Service port `port`.

    The same rule the EndpointSlice controller applies, including named target ports.
    """
    port_name = service_port_name(service, port)
    service_port = next(p for p in service["spec"]["ports"] if (p.get("name") or "") == port_name)
    target = service_port.get("targetPort", service_port["port"])
    result: set[tuple[str, int]] = set()
    for pod in pods:
        if not _is_ready(pod):
            continue
        number = _target_port(pod, target)
        if number is not None:
            result.add((pod["status"]["podIP"], number))
    return sorted(result)


def service_port_name(service: JsonDict, port: int | str | None) -> str:
    """Name of the Service port selected by number or name (the only port when None)."""
    ports = service.get("spec", {}).get("ports", [])
    for candidate in ports:
        if port is None and len(ports) == 1:
            return str(candidate.get("name") or "")
        if port in (candidate.get("name"), candidate.get("port")):
            return str(candidate.get("name") or "")
    name = service.get("metadata", {}).get("name")
    raise ValueError(f"Service {name!r} has no port {port!r}; ports are "
                     f"{[p.get('port') for p in ports]} — pass one of them")


@dataclass
class TrafficReport:
    """What the client saw: counts per outcome and the first few failures."""

    successes: int = 0
    failures: int = 0
    # Answers by what `classify` made of their body (e.g. the model version that answered):
    # through a ClusterIP, which hides which pod did, this says who answered.
    by_answer: Counter[str] = field(default_factory=Counter)
    first_failures: list[str] = field(default_factory=list)
    # The node's neighbour table, the Service's NAT rules and its tracked connections, read
    # right after the first failure (through a node namespace only): what the kernel knew.
    evidence: str = ""

    @property
    def total(self) -> int:
        """All requests attempted."""
        return self.successes + self.failures

    def summary(self) -> str:
        """One line for assertion messages (and the evidence after it, when there is some)."""
        line = (f"{self.successes} ok, {self.failures} failed, by answer "
                f"{dict(self.by_answer)}, first failures {self.first_failures}")
        return f"{line}\n{self.evidence}" if self.evidence else line


def service_endpoints(client: KubeClient, namespace: str, service: str,
                      port: int | str | None = None) -> list[tuple[str, int]]:
    """The ready (address, port) pairs behind a Service, read from the API server now."""
    svc = client.get(f"/api/v1/namespaces/{namespace}/services/{service}")
    pods = client.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=label_selector(svc))
    return ready_endpoints(svc, pods.get("items", []), port)


def cluster_ip(client: KubeClient, namespace: str, service: str,
               port: int | str | None = None) -> tuple[str, int]:
    """The Service's (ClusterIP, port) for `port` (by number or name; the only one when
    None)."""
    svc = client.get(f"/api/v1/namespaces/{namespace}/services/{service}")
    name = service_port_name(svc, port)
    number = next(p["port"] for p in svc["spec"]["ports"] if (p.get("name") or "") == name)
    return str(svc["spec"]["clusterIP"]), int(number)


def _clock() -> str:
    """Wall-clock time to the millisecond, as the components' logs print it."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


class Traffic:
    """Background traffic to one Service; bounded by count and time; a context manager."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        service: str,
        *,
        port: int | str | None = None,
        path: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        interval: float = 0.02,
        timeout: float = 5.0,
        max_requests: int = 100_000,
        max_seconds: float = 600.0,
        ok_statuses: range = range(200, 400),
        netns: str | None = None,
        classify: Callable[[str], str] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.service = service
        self.port = port
        self.path = path
        self.method = method
        self.body = body
        self.headers = headers or {}
        self.interval = interval
        self.timeout = timeout
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.ok_statuses = ok_statuses
        # The node's namespace, where the Service's ClusterIP exists.
        self.netns = netns
        self.classify = classify
        self.report = TrafficReport()
        # The Service's (ClusterIP, port), read once by start(): a Service keeps its
        # ClusterIP for its lifetime, and kube-proxy picks the pod behind it.
        self.address: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _send(self, host: str, port: int) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            if self.report.total >= self.max_requests or \
                    time.monotonic() - started >= self.max_seconds:
                break
            sent = _clock()
            self._record(sent, *self._request(host, port))
            self._stop.wait(self.interval)

    def _request(self, host: str, port: int, source_port: int | None = None
                 ) -> tuple[str | None, str]:
        """(the error, None when the answer was ok; the answer's body)."""
        conn = HTTPConnection(self.netns, host, port, self.timeout, source_port)
        try:
            conn.request(self.method, self.path, body=self.body, headers=self.headers)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            if response.status in self.ok_statuses:
                return None, body
            return f"HTTP {response.status}", body
        except (OSError, http.client.HTTPException) as error:
            return f"{type(error).__name__}: {error}", ""
        finally:
            conn.close()

    def _record(self, sent: str, error: str | None, body: str = "") -> None:
        # One sender thread writes the report; readers only read counters.
        if error is None:
            self.report.successes += 1
            if self.classify is not None:
                self.report.by_answer[self.classify(body)] += 1
            return
        self.report.failures += 1
        if len(self.report.first_failures) < 10:
            # Wall-clock times, sent and failed: to line a failure up with events and
            # component logs (kube-proxy's syncs, the pods' stops).
            self.report.first_failures.append(
                f"#{self.report.total} sent {sent}, failed {_clock()}: {error}")
        if self.report.failures == 1 and self.netns is not None and self.address is not None:
            self.report.evidence = netevidence.collect(self.netns, self.namespace,
                                                       self.service, self.address[0])

    def start(self, first_answer_timeout: float = 30.0) -> Traffic:
        """Read the Service's ClusterIP, wait for its first answer, then start sending.

        Through kube-proxy, a Service made moments ago (a first blue-green version's stable
        Service is made at its promotion) answers once kube-proxy has programmed its
        ClusterIP, about a second later: counting starts at its first answer, as any client
        of a new Service would wait for it. The change under test is applied after start."""
        host, port = self.address = cluster_ip(self.client, self.namespace, self.service,
                                               self.port)
        self._await_first_answer(host, port, first_answer_timeout)
        self._thread = threading.Thread(target=self._send, args=(host, port), daemon=True)
        self._thread.start()
        return self

    def _await_first_answer(self, host: str, port: int, timeout: float) -> None:
        # Probes leave from ports the sender never gets (`probe_ports`): a probe that beat
        # kube-proxy would otherwise hand its un-NAT'd tracking entry to a counted request.
        ports = probe_ports(self.netns)
        deadline = time.monotonic() + timeout
        error: str | None = "no attempt"
        while time.monotonic() < deadline:
            error, _ = self._request(host, port, next(ports))
            if error is None:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.namespace}/{self.service} never answered through its "
                             f"ClusterIP within {timeout:.0f}s; last: {error}")

    def stop(self) -> TrafficReport:
        """Stop sending and return the report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        return self.report

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
