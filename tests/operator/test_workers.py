"""handlers.Workers: one reconcile loop per ModelDeployment, woken by events."""

from __future__ import annotations

import asyncio
from typing import Any

from modeldeploy_operator import handlers
from modeldeploy_operator.planning import observe
from modeldeploy_operator.reconcile import Gone, Outcome


class Recorder:
    def __init__(self, requeue: float | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.requeue = requeue
        self.gone = False
        self.fresh: list[bool] = []

    def __call__(self, ctx: Any, namespace: str, name: str, memory: observe.Memory,
                 fresh: bool) -> Outcome:
        self.calls.append((namespace, name))
        self.fresh.append(fresh)
        if self.gone:
            raise Gone(name)
        return Outcome(self.requeue, "Available", False, 0)


def workers(recorder: Recorder) -> handlers.Workers:
    return handlers.Workers(lambda store: None, reconcile_fn=recorder)  # type: ignore[arg-type,return-value]


async def test_a_poke_runs_one_reconcile_and_a_burst_of_pokes_is_folded() -> None:
    recorder = Recorder()
    w = workers(recorder)
    for _ in range(5):
        w.poke(("ns", "a"))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert recorder.calls == [("ns", "a")]
    w.poke(("ns", "a"))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert len(recorder.calls) == 2
    await w.stop_all()


async def test_the_planner_requeue_time_wakes_the_worker_without_events() -> None:
    recorder = Recorder(requeue=0.1)
    w = workers(recorder)
    w.poke(("ns", "a"))
    await asyncio.sleep(1.2)
    assert len(recorder.calls) >= 3
    await w.stop_all()


async def test_a_gone_resource_ends_its_worker() -> None:
    recorder = Recorder()
    recorder.gone = True
    w = workers(recorder)
    w.poke(("ns", "a"))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert w.keys() == []


async def test_echoes_of_our_own_status_writes_do_not_wake_the_worker() -> None:
    recorder = Recorder()
    w = workers(recorder)
    w.poke_if_changed(("ns", "a"), (1, None, None, None))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    w.poke_if_changed(("ns", "a"), (1, None, None, None))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert len(recorder.calls) == 1
    w.poke_if_changed(("ns", "a"), (2, None, None, None))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert len(recorder.calls) == 2
    await w.stop_all()


async def test_the_first_pass_and_one_per_resync_period_read_fresh_the_rest_the_store() -> None:
    recorder = Recorder(requeue=0.05)
    w = handlers.Workers(lambda store: None, reconcile_fn=recorder,  # type: ignore[arg-type,return-value]
                         resync_seconds=0.5)
    w.poke(("ns", "a"))
    await asyncio.sleep(1.3)
    await w.stop_all()
    fresh = recorder.fresh
    assert fresh[0] is True, fresh
    assert fresh.count(False) > fresh.count(True) >= 2, fresh
