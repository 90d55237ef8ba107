"""Per-stage deadlines (fetch, load, warm-up, validation) and what happens when one passes.

A stage that overruns its deadline ends the process with a termination message naming the
stage, so the operator can report "LoadDeadlineExceeded" instead of waiting out the whole
progress deadline. A timer thread does the watching: the stage itself may be stuck in a
download or inside torch and cannot be asked to check a clock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Literal

from modeldeploy_contract.config import StageDeadlines
from modeldeploy_contract.reasons import STAGE_DEADLINE_REASONS

from modeldeploy_runtime import termination

log = logging.getLogger("modeldeploy.runtime")

Stage = Literal["fetch", "load", "warmup", "validation"]

_ADVICE: dict[Stage, str] = {
    "fetch": "check the model source's reachability and throughput",
    "load": "give the pod more CPU or memory, or check the weights' size",
    "warmup": "use fewer warm-up inputs or iterations, or give the pod more CPU",
    "validation": "give the pod more CPU, or check that the model answers at all",
}


def exceeded_message(stage: Stage, limit: float) -> str:
    """The termination message for `stage` overrunning `limit` seconds."""
    return termination.message(
        STAGE_DEADLINE_REASONS[stage],
        f"the {stage} stage did not finish within stageDeadlineSeconds.{stage}={limit:g}s; "
        f"raise spec.stageDeadlineSeconds.{stage} or {_ADVICE[stage]}",
    )


class StageClock:
    """Runs one stage's timer at a time; `on_exceeded(stage, limit)` fires on overrun."""

    def __init__(
        self, limits: StageDeadlines, on_exceeded: Callable[[Stage, float], None]
    ) -> None:
        self._limits = limits
        self._on_exceeded = on_exceeded
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def enter(self, stage: Stage) -> None:
        """Stop the previous stage's timer and start `stage`'s (if it has a deadline)."""
        limit: float | None = getattr(self._limits, stage)
        with self._lock:
            self._cancel()
            if limit is None:
                return
            timer = threading.Timer(limit, self._on_exceeded, args=(stage, limit))
            timer.name = f"deadline-{stage}"
            timer.daemon = True
            self._timer = timer
            timer.start()

    def finish(self) -> None:
        """Every stage is over: stop watching."""
        with self._lock:
            self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def exit_on_overrun(
    termination_log: str, note: Callable[[str], None] = lambda reason: None
) -> Callable[[Stage, float], None]:
    """An `on_exceeded` that reports the overrun and ends the process with exit code 1."""

    def overran(stage: Stage, limit: float) -> None:
        reason = exceeded_message(stage, limit)
        note(reason)
        log.error("%s", reason)
        termination.write_reason(termination_log, reason)
        logging.shutdown()
        # The stage may be stuck inside torch or a socket: there is nothing to wait for.
        os._exit(1)

    return overran
