"""Pure computation of a pod's status from what the agent knows of its containers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


@dataclass
class ContainerRecord:
    """One container's status as the API shows it (state/lastState in API shape)."""

    name: str
    image: str
    state: JsonDict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JsonDict = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def as_status(self) -> JsonDict:
        """The containerStatuses entry."""
        status: JsonDict = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    @property
    def running(self) -> bool:
        """Whether the process is up."""
        return "running" in self.state

    @property
    def succeeded(self) -> bool:
        """Whether the container's current state is a clean exit."""
        return bool(self.state.get("terminated", {}).get("exitCode") == 0)


@dataclass(frozen=True)
class PodView:
    """Everything `pod_status` needs besides the container records."""

    restart_policy: str
    pod_ip: str | None
    host_ip: str
    start_time: str
    now: str
    readiness_gates: tuple[str, ...] = ()
    init_failed: bool = False
    terminal: bool = False


def phase(init: list[ContainerRecord], main: list[ContainerRecord], view: PodView) -> str:
    """The pod phase the kubelet would report."""
    if view.init_failed:
        return "Failed"
    if not all(r.succeeded for r in init):
        return "Pending"
    if main and all("terminated" in r.state for r in main) and view.terminal:
        return "Succeeded" if all(r.succeeded for r in main) else "Failed"
    if any(r.running or r.restart_count > 0 or "terminated" in r.state for r in main):
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, previous: dict[str, JsonDict], now: str,
               reason: str | None = None) -> JsonDict:
    status = "True" if ok else "False"
    before = previous.get(kind)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now
    condition: JsonDict = {"type": kind, "status": status, "lastTransitionTime": since,
                           "lastProbeTime": None}
    if not ok and reason:
        condition["reason"] = reason
    return condition


def pod_status(
    init: list[ContainerRecord],
    main: list[ContainerRecord],
    view: PodView,
    previous_conditions: list[JsonDict],
) -> JsonDict:
    """Return the `status` for a merge patch; conditions others own are carried over."""
    previous = {c["type"]: c for c in previous_conditions}
    initialized = all(r.succeeded for r in init)
    containers_ready = initialized and bool(main) and all(r.ready for r in main)
    gates_ok = all(previous.get(g, {}).get("status") == "True" for g in view.readiness_gates)
    conditions = [c for c in previous_conditions if c["type"] not in OWN_CONDITIONS]
    conditions += [
        _condition("PodReadyToStartContainers", view.pod_ip is not None, previous, view.now),
        _condition("Initialized", initialized, previous, view.now, "ContainersNotInitialized"),
        _condition("ContainersReady", containers_ready, previous, view.now, "ContainersNotReady"),
        _condition("Ready", containers_ready and gates_ok, previous, view.now,
                   "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady"),
    ]
    status: JsonDict = {
        "phase": phase(init, main, view),
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "containerStatuses": [r.as_status() for r in main],
        "initContainerStatuses": [r.as_status() for r in init] or None,
    }
    if view.pod_ip is not None:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    return status


def backoff_seconds(restart_count: int, base: float, cap: float = 300.0) -> float:
    """Delay before restart number `restart_count + 1`: base, 2*base, 4*base... capped."""
    return float(min(cap, base * (2 ** max(0, restart_count))))


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """Whether a container that exited with `exit_code` is started again."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False
