"""The kopf glue: lifecycle handlers and child watches feed one worker per ModelDeployment.

Each ModelDeployment has one asyncio worker that runs `reconcile` (in a thread) whenever
it is woken, or when the planner's requeue time comes. Handlers only feed the store and
wake workers: create/update/resume start one, events on child Deployments, Pods and
Services go into the `ChildStore` and wake their owner (so progress is seen as it
happens, without busy polling or list calls), delete stops it. A settled resource with
no event costs nothing: no pass, no API call. What heals a missed watch event is the
resync: once per period (with jitter) each watched namespace is relisted, one list call
per kind for all its resources, and only the resources whose objects differ from what
the store held are reconciled. A worker's first pass waits for its namespace's first
relist, so a restart costs a handful of lists, not a few per resource. No finalizer is
involved, so a stopped operator never blocks `kubectl delete`; owner references
garbage-collect the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from modeldeploy_operator import metrics
from modeldeploy_operator.adapters import store as child_store
from modeldeploy_operator.adapters.store import ChildStore
from modeldeploy_operator.api import naming
from modeldeploy_operator.api.errors import PermanentError, TransientError
from modeldeploy_operator.api.spec import GROUP, PLURAL, VERSION
from modeldeploy_operator.planning import observe
from modeldeploy_operator.reconcile import Context, Gone, reconcile

log = logging.getLogger(__name__)

Key = tuple[str, str]
# Relist everything from the API server at least this often, even when nothing happens (a
# missed watch event heals); `--resync-seconds` sets it.
RESYNC_SECONDS = 600.0
# Each period is drawn within ±this fraction, so replicas of the operator (or restarts
# in step) do not relist in lockstep.
RESYNC_JITTER = 0.1
# The API server ends each watch request after this long; kopf resumes it.
WATCH_SERVER_SECONDS = 300
# Events arriving within this window are folded into one reconcile.
DEBOUNCE_SECONDS = 0.1
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Worker:
    """The reconcile loop of one ModelDeployment."""

    key: Key
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    memory: observe.Memory = field(default_factory=observe.Memory)
    task: asyncio.Task[None] | None = None
    # (generation, annotations that matter) last seen on a watch event.
    signature: tuple[Any, ...] | None = None
    # The next pass reads from the API server itself: after an error, the store may be
    # what was wrong.
    fresh: bool = False

    @property
    def task_done(self) -> bool:
        """No loop is running for this worker."""
        return self.task is None or self.task.done()


Relist = Callable[[Context, ChildStore, str], set[str]]


def relist_namespace(ctx: Context, store: ChildStore, namespace: str) -> set[str]:
    """The resync of one namespace (see `adapters.store.relist`)."""
    return child_store.relist(ctx.kube, store, namespace)


class Workers:
    """The running workers, by (namespace, name), and the resync that relists for them."""

    def __init__(
        self,
        context_factory: Callable[[ChildStore], Context],
        reconcile_fn: Callable[[Context, str, str, observe.Memory, bool], Any] = reconcile,
        resync_seconds: float = RESYNC_SECONDS,
        store: ChildStore | None = None,
        relist_fn: Relist = relist_namespace,
    ) -> None:
        self._context_factory = context_factory
        self._context: Context | None = None
        self._reconcile = reconcile_fn
        self._relist = relist_fn
        self._workers: dict[Key, Worker] = {}
        # The first relist of each namespace, awaited by its workers' first passes.
        self._synced: dict[str, asyncio.Task[None]] = {}
        self._resync_task: asyncio.Task[None] | None = None
        self.resync_seconds = resync_seconds
        self.store = store if store is not None else ChildStore()

    @property
    def context(self) -> Context:
        """The shared client context, made on first use (after kopf has logged in)."""
        if self._context is None:
            self._context = self._context_factory(self.store)
        return self._context

    def keys(self) -> list[Key]:
        """The ModelDeployments with a running worker."""
        return list(self._workers)

    def poke(self, key: Key) -> None:
        """Start the worker of `key` if needed and wake it."""
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync_loop(), name="resync")
        worker = self._workers.get(key)
        if worker is None or worker.task_done:
            worker = Worker(key)
            self._workers[key] = worker
            worker.task = asyncio.create_task(self._run(worker), name=f"reconcile {key}")
        worker.wake.set()

    def poke_if_changed(self, key: Key, signature: tuple[Any, ...]) -> None:
        """Wake `key` unless the event only echoes our own status write."""
        worker = self._workers.get(key)
        if worker is not None and worker.signature == signature and not worker.task_done:
            return
        self.poke(key)
        self._workers[key].signature = signature

    async def stop(self, key: Key) -> None:
        """Stop the worker of `key`, if any."""
        worker = self._workers.pop(key, None)
        if worker is not None and worker.task is not None:
            worker.task.cancel()
            await asyncio.gather(worker.task, return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop every worker and the resync (operator shutdown)."""
        tasks = [self._resync_task, *self._synced.values()]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        self._resync_task = None
        self._synced.clear()
        for key in list(self._workers):
            await self.stop(key)

    async def relist(self, namespace: str) -> None:
        """Relist `namespace` into the store; wake each resource whose objects changed."""
        changed = await asyncio.to_thread(self._relist, self.context, self.store, namespace)
        for name in sorted(changed):
            key = (namespace, name)
            if key in self._workers or self.store.get(
                child_store.MODEL_DEPLOYMENT, namespace, name
            ) is not None:
                self.poke(key)

    async def _first_relist(self, namespace: str) -> bool:
        """Wait for `namespace`'s first relist; False when it failed (read fresh instead)."""
        task = self._synced.get(namespace)
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = asyncio.create_task(self.relist(namespace), name=f"relist {namespace}")
            self._synced[namespace] = task
        try:
            await asyncio.shield(task)
        except Exception as exc:
            log.warning("relisting %s failed: %s; reading from the API server", namespace, exc)
            return False
        return True

    async def _resync_loop(self) -> None:
        while True:
            jitter = random.uniform(1 - RESYNC_JITTER, 1 + RESYNC_JITTER)
            await asyncio.sleep(self.resync_seconds * jitter)
            for namespace in sorted({ns for ns, _ in self._workers}):
                try:
                    await self.relist(namespace)
                except Exception as exc:
                    log.warning("resync of %s failed: %s", namespace, exc)

    async def _run(self, worker: Worker) -> None:
        namespace, name = worker.key
        failures = 0
        worker.fresh = not await self._first_relist(namespace)
        while True:
            await asyncio.sleep(DEBOUNCE_SECONDS)
            worker.wake.clear()
            started = time.monotonic()
            delay: float | None
            try:
                outcome = await asyncio.to_thread(
                    self._reconcile, self.context, namespace, name, worker.memory, worker.fresh
                )
                failures = 0
                worker.fresh = False
                delay = getattr(outcome, "requeue_after", None)
                metrics.observe_reconcile(
                    time.monotonic() - started, getattr(outcome, "result", "changed")
                )
            except Gone:
                log.info("%s/%s is gone; its worker stops", namespace, name)
                self._workers.pop(worker.key, None)
                return
            except PermanentError as exc:
                # Reported without a traceback: the same input fails the same way.
                metrics.observe_reconcile(time.monotonic() - started, "error")
                log.error("%s/%s: %s", namespace, name, exc)
                delay = ERROR_BACKOFF[-1]
            except (TransientError, OSError) as exc:
                metrics.observe_reconcile(time.monotonic() - started, "error")
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                failures += 1
                log.warning("%s/%s: %s; retrying in %.0fs", namespace, name, exc, delay)
            except Exception:
                metrics.observe_reconcile(time.monotonic() - started, "error")
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                failures += 1
                log.exception("%s/%s: reconcile failed; retrying in %.0fs", namespace, name, delay)
            if failures:
                worker.fresh = True
            # No requeue: only an event or the resync wakes a settled resource.
            timeout = None if delay is None else max(0.0, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wake.wait(), timeout=timeout)


def in_cluster_server(env: Mapping[str, str]) -> str | None:
    """The API server URL a pod is given in KUBERNETES_SERVICE_HOST/PORT, if it is given."""
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (
        meta.get("generation"),
        annotations.get(naming.ANNOTATION_PROMOTE),
        annotations.get(naming.ANNOTATION_RETRY),
        meta.get("deletionTimestamp"),
    )


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers on `registry` (kept explicit: importing has no side effects)."""

    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        # Handler progress in annotations only: status belongs to the planner, and the
        # CRD's status schema would prune kopf's own fields anyway.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
        # Our Events tell the rollout's story; kopf's "handler succeeded" ones would bury it.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = WATCH_SERVER_SECONDS
        # kopf's default (70 s) reconnects every quiet watch stream that often: seven
        # requests a minute on an idle cluster. The API server ends each watch after
        # WATCH_SERVER_SECONDS anyway (kopf then resumes from the last resourceVersion); a
        # connection that dies silently is caught this much later, and what it may have
        # missed is healed by the resync's relist.
        settings.watching.inactivity_timeout = WATCH_SERVER_SECONDS + 30

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry gets none of kopf's default handlers, login included.
        info = kopf.login_with_service_account(**kwargs)
        if info is None:
            return kopf.login_with_kubeconfig(**kwargs)
        # kopf assumes https://kubernetes.default.svc, which needs cluster DNS; the
        # environment Kubernetes sets in every pod names the API server directly (as
        # client-go and the kubernetes client's in-cluster config use it).
        server = in_cluster_server(os.environ)
        return dataclasses.replace(info, server=server) if server else info

    @kopf.on.cleanup(registry=registry)
    async def shutdown(*, memo: Any, **_: Any) -> None:
        await memo.workers.stop_all()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def start_or_wake(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        # async: kopf runs a plain function in a thread, where poke's tasks and events
        # cannot be made or set (RuntimeError: no running event loop).
        memo.workers.poke((namespace or "", name))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, optional=True)
    async def stop(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        await memo.workers.stop((namespace or "", name))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_model_deployment(
        *, type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
    ) -> None:
        key = (namespace or "", name)
        memo.workers.store.observe("ModelDeployment", body, deleted=type == "DELETED")
        if type == "DELETED":
            await memo.workers.stop(key)
            return
        # Our own status writes come back as events too; only spec, annotation or
        # deletion changes are news.
        memo.workers.poke_if_changed(key, _signature(body))

    children = {naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT}

    @kopf.on.event("apps", "v1", "deployments", labels=children, registry=registry)
    @kopf.on.event("", "v1", "pods", labels=children, registry=registry)
    @kopf.on.event("", "v1", "services", labels=children, registry=registry)
    @kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=children, registry=registry)
    async def on_child(
        *, type: str, body: kopf.Body, labels: Mapping[str, str], namespace: str | None,
        memo: Any, **_: Any
    ) -> None:
        kind = str(body.get("kind") or "")
        news = memo.workers.store.observe(kind, body, deleted=type == "DELETED") if kind else True
        owner = labels.get(naming.LABEL_MODEL_DEPLOYMENT)
        # kopf lists every object again when a watch reconnects: a copy we already hold
        # wakes nobody, or every resource would reconcile every few minutes for nothing.
        if owner and news:
            memo.workers.poke((namespace or "", owner))
