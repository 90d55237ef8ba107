"""Container probes (httpGet, tcpSocket, exec) and the kubelet's threshold bookkeeping."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


def resolve_port(port: int | str, container: JsonDict) -> int:
    """Resolve a probe port given as a number or as the name of a containerPort."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(
        f"probe port {port!r} names no port of container {container.get('name')!r}; "
        "declare it under ports or use a number"
    )


def http_get(spec: JsonDict, pod_ip: str, container: JsonDict, timeout: float) -> bool:
    """One httpGet probe: success is a status in [200, 400)."""
    host = spec.get("host") or pod_ip
    port = resolve_port(spec["port"], container)
    conn: http.client.HTTPConnection
    if spec.get("scheme", "HTTP").upper() == "HTTPS":
        # The kubelet does not verify probe certificates either.
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
    headers.setdefault("User-Agent", "kube-probe/modeldeploy-nodeagent")
    try:
        conn.request("GET", spec.get("path", "/") or "/", headers=headers)
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def tcp_socket(spec: JsonDict, pod_ip: str, container: JsonDict, timeout: float) -> bool:
    """One tcpSocket probe: success is an accepted connection."""
    port = resolve_port(spec["port"], container)
    try:
        with socket.create_connection((spec.get("host") or pod_ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def exec_probe(argv_prefix: Sequence[str], command: Sequence[str], env: Mapping[str, str],
               timeout: float) -> bool:
    """One exec probe: success is exit code 0 within the timeout.

    `argv_prefix` enters the container's mount namespace (nsenter) when it has one.
    """
    try:
        result = subprocess.run([*argv_prefix, *command], env=dict(env), timeout=timeout,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0


@dataclass
class ProbeTracker:
    """Counts consecutive results against a probe's thresholds, on the agent's clock."""

    spec: JsonDict
    started_at: float
    next_due: float = 0.0
    successes: int = 0
    failures: int = 0
    passed: bool = False

    def __post_init__(self) -> None:
        self.next_due = self.started_at + float(self.spec.get("initialDelaySeconds", 0))

    @property
    def period(self) -> float:
        """Seconds between probes."""
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        """Seconds one probe may take."""
        return float(self.spec.get("timeoutSeconds", 1))

    def due(self, now: float) -> bool:
        """Whether the probe should run now."""
        return now >= self.next_due

    def record(self, ok: bool, now: float) -> None:
        """Record one result; `passed` flips after successThreshold / failureThreshold."""
        self.next_due = now + self.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.passed = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= int(self.spec.get("failureThreshold", 3)):
                self.passed = False

    @property
    def failed_out(self) -> bool:
        """Whether failures reached failureThreshold (liveness/startup kill the container)."""
        return self.failures >= int(self.spec.get("failureThreshold", 3))
