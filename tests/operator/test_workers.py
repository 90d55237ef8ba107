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


class Relister:
    """Stands in for the API server's lists: records each relist, names what changed."""

    def __init__(self, changed: set[str] | None = None, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.changed = changed or set()
        self.fail = fail

    def __call__(self, ctx: Any, store: Any, namespace: str) -> set[str]:
        self.calls.append(namespace)
        if self.fail:
            raise OSError("connection refused")
        changed, self.changed = self.changed, set()
        return changed


async def eventually(holds: Any, what: str, timeout: float = 20.0) -> None:
    """Wait until `holds()` (reconciles run in threads: a loaded machine delays them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not holds():
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


def workers(
    recorder: Recorder, relister: Relister | None = None, resync_seconds: float = 600.0
) -> handlers.Workers:
    return handlers.Workers(
        lambda store: None,  # type: ignore[arg-type,return-value]
        reconcile_fn=recorder,
        resync_seconds=resync_seconds,
        relist_fn=relister or Relister(),
    )


async def test_a_poke_runs_one_reconcile_and_a_burst_of_pokes_is_folded() -> None:
    recorder = Recorder()
    w = workers(recorder)
    for _ in range(5):
        w.poke(("ns", "a"))
    await eventually(lambda: recorder.calls, "the first pass")
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert recorder.calls == [("ns", "a")]
    w.poke(("ns", "a"))
    await eventually(lambda: len(recorder.calls) == 2, "the second pass")
    await w.stop_all()


async def test_the_planner_requeue_time_wakes_the_worker_without_events() -> None:
    recorder = Recorder(requeue=0.1)
    w = workers(recorder)
    w.poke(("ns", "a"))
    await eventually(lambda: len(recorder.calls) >= 3, "three passes at the requeue time")
    await w.stop_all()


async def test_a_gone_resource_ends_its_worker() -> None:
    recorder = Recorder()
    recorder.gone = True
    w = workers(recorder)
    w.poke(("ns", "a"))
    await eventually(lambda: w.keys() == [], "the worker gone")


async def test_echoes_of_our_own_status_writes_do_not_wake_the_worker() -> None:
    recorder = Recorder()
    w = workers(recorder)
    w.poke_if_changed(("ns", "a"), (1, None, None, None))
    await eventually(lambda: recorder.calls, "the first pass")
    w.poke_if_changed(("ns", "a"), (1, None, None, None))
    await asyncio.sleep(handlers.DEBOUNCE_SECONDS * 3)
    assert len(recorder.calls) == 1
    w.poke_if_changed(("ns", "a"), (2, None, None, None))
    await eventually(lambda: len(recorder.calls) == 2, "a pass for the new generation")
    await w.stop_all()


async def test_first_passes_wait_for_one_relist_of_their_namespace_and_read_the_store() -> None:
    recorder, relister = Recorder(), Relister()
    w = workers(recorder, relister)
    for name in ("a", "b", "c"):
        w.poke(("ns", name))
    w.poke(("other", "d"))
    await eventually(lambda: len(recorder.calls) == 4, "four first passes")
    await w.stop_all()
    assert sorted(relister.calls) == ["ns", "other"]
    assert sorted(recorder.calls) == [("ns", "a"), ("ns", "b"), ("ns", "c"), ("other", "d")]
    assert recorder.fresh == [False] * 4


async def test_a_failed_first_relist_makes_the_first_pass_read_from_the_api_server() -> None:
    recorder = Recorder()
    w = workers(recorder, Relister(fail=True))
    w.poke(("ns", "a"))
    await eventually(lambda: recorder.calls, "the first pass")
    await w.stop_all()
    assert recorder.fresh == [True]


async def test_the_resync_relists_each_namespace_once_and_wakes_only_what_changed() -> None:
    recorder, relister = Recorder(), Relister()
    w = workers(recorder, relister, resync_seconds=0.4)
    for name in ("a", "b", "c"):
        w.poke(("ns", name))
    await eventually(lambda: len(recorder.calls) == 3, "three first passes")
    relister.changed = {"b"}  # what a missed watch event left out of the store
    await eventually(lambda: len(recorder.calls) > 3, "a pass after the resync")
    await asyncio.sleep(0.3)
    await w.stop_all()
    assert relister.calls.count("ns") >= 2
    assert recorder.calls[3:] == [("ns", "b")]


async def test_a_settled_resource_is_not_reconciled_without_an_event() -> None:
    recorder = Recorder(requeue=None)
    w = workers(recorder, resync_seconds=0.3)
    w.poke(("ns", "a"))
    await asyncio.sleep(1.0)
    await w.stop_all()
    assert recorder.calls == [("ns", "a")]


async def test_after_an_error_the_next_pass_reads_from_the_api_server() -> None:
    class Failing(Recorder):
        def __call__(self, ctx: Any, namespace: str, name: str, memory: observe.Memory,
                     fresh: bool) -> Outcome:
            outcome = super().__call__(ctx, namespace, name, memory, fresh)
            if len(self.calls) == 1:
                raise OSError("reset by peer")
            return outcome

    recorder = Failing()
    w = workers(recorder)
    w.poke(("ns", "a"))
    await eventually(lambda: len(recorder.calls) >= 2, "the pass after the error")
    await w.stop_all()
    assert recorder.fresh[:2] == [False, True]


def test_every_resource_handler_that_wakes_workers_runs_on_the_event_loop() -> None:
    # kopf runs a plain function in a thread, where Workers.poke can neither start a task
    # nor set an asyncio.Event: "RuntimeError: no running event loop" (seen in an e2e
    # operator restart, which lost the child events it raised on).
    import inspect

    import kopf

    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    resource_handlers = [*registry._changing.get_all_handlers(),
                         *registry._watching.get_all_handlers()]
    assert {h.fn.__name__ for h in resource_handlers} >= {"start_or_wake", "on_child"}
    plain = sorted({h.fn.__name__ for h in resource_handlers
                    if not inspect.iscoroutinefunction(h.fn)})
    assert plain == [], f"handlers kopf would run in a thread: {plain}"
