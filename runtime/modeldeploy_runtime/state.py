"""The runtime's explicit state machine; readiness is a state, not a flag.

    Loading -> WarmingUp -> Validating -> Ready   (fetching is the init container's job)
    any state but Ready -> Failed
"""

from __future__ import annotations

import threading
import time

from modeldeploy_contract.status import (
    PHASE_NAMES,
    ModelId,
    Phase,
    Status,
    ValidationResult,
)

__all__ = ["PHASE_NAMES", "Phase", "RuntimeState", "Status", "can_move"]


_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.LOADING: frozenset({Phase.WARMING_UP, Phase.FAILED}),
    Phase.WARMING_UP: frozenset({Phase.VALIDATING, Phase.FAILED}),
    Phase.VALIDATING: frozenset({Phase.READY, Phase.FAILED}),
    Phase.READY: frozenset(),
    Phase.FAILED: frozenset(),
}

def can_move(current: Phase, target: Phase) -> bool:
    """True when `current -> target` is an edge of the state machine."""
    return target in _NEXT[current]


class RuntimeState:
    """Thread-safe holder of the current Status; the loader writes, the server reads."""

    def __init__(self, name: str, version: str, task: str, started: float) -> None:
        self._lock = threading.Lock()
        self._started = started
        self._status = Status(
            phase=Phase.LOADING,
            model=ModelId(name=name, version=version),
            task=task,
            phases=dict.fromkeys(PHASE_NAMES),
        )

    def set_revision(self, revision: str | None) -> None:
        """Record the source revision of the files being served (from the cache manifest)."""
        with self._lock:
            self._status.model.revision = revision

    def snapshot(self) -> Status:
        """A copy of the current status."""
        with self._lock:
            return self._status.model_copy(deep=True)

    @property
    def phase(self) -> Phase:
        """The current phase."""
        with self._lock:
            return self._status.phase

    def move(self, target: Phase) -> None:
        """Enter `target`; an illegal edge is a programming error."""
        with self._lock:
            current = self._status.phase
            if not can_move(current, target):
                raise RuntimeError(f"illegal runtime transition {current} -> {target}")
            self._status.phase = target
            if target is Phase.READY:
                self._status.time_to_ready_seconds = round(time.monotonic() - self._started, 4)

    def record(self, phase_name: str, seconds: float) -> None:
        """Add a measured duration (seconds) to a phase; a phase may be measured in parts."""
        with self._lock:
            before = self._status.phases.get(phase_name) or 0.0
            self._status.phases[phase_name] = round(before + seconds, 4)

    def set_validation(self, result: ValidationResult) -> None:
        """Store the validation outcome."""
        with self._lock:
            self._status.validation = result

    def fail(self, reason: str) -> None:
        """Enter Failed with a one-line reason (unless already terminal)."""
        with self._lock:
            if self._status.phase not in (Phase.READY, Phase.FAILED):
                self._status.phase = Phase.FAILED
            self._status.error = reason
