"""Dynamic batching: concurrent requests for the model share forward passes.

Requests arrive already tokenised (tokenisation runs in the server's thread pool, off the
forward thread) as `Work`: unpadded rows and a `compute` that pads rows, runs the model and
reduces each row to its output (pooled vector, logits). A forward thread takes the queue
in arrival order: the requests whose `key` matches the oldest one's, up to `max_batch_tokens`
tokens, waiting at most `max_wait` for more while the batch is short. Their rows are sorted
by length and cut into sub-batches (`plan`), so a long text pads only its neighbours in
length; each request is answered as soon as its own rows are done.

On a CPU there are several forward threads (`fit`: as many as preload.forward_threads
says), each taking its own batch from the one queue and running it with one intra-op
thread: passes run side by side instead of each splitting its matrix multiplies across
OpenMP workers that meet at a barrier after every operation (bench/README.md). Under load
each thread still takes whatever queued while it was busy, so short texts keep batching;
a thread that finds idle ones hands them a share of its sub-batches (`spread`).

The queue is bounded (`QueueFull`: a 503 with Retry-After) and every request has a deadline
(`DeadlineExceeded`): one that waited too long gets an error, never a late answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from modeldeploy_contract.config import Batching

if TYPE_CHECKING:
    from torch import Tensor

    from modeldeploy_runtime.metrics import Metrics
    from modeldeploy_runtime.tokenizer import Row

T = TypeVar("T")
log = logging.getLogger("modeldeploy.runtime")
# Pad tokens worth one more forward pass: a sub-batch is cut where stretching it to the next
# (longer) row would add more padding than this. A forward pass of a small encoder costs
# about as much as a few hundred tokens of compute, so fewer cuts would pad more than they
# save, and more cuts would pay the per-pass overhead for little padding.
SPLIT_PADDING_TOKENS = 256
_RETRY_AFTER_MAX = 60
# Unset max_batch_tokens: on a CPU a pass of 2048 tokens already keeps every core busy (a
# pass of 32 texts of 200 tokens answered nobody for seconds on a loaded 2-core machine, all
# at once); a GPU needs larger passes to be used at all.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384


class QueueFull(Exception):
    """The queue holds max_queued_texts texts already; the client should retry later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request was not answered within request_timeout_seconds."""


@dataclass(frozen=True)
class Work:
    """One request's rows and how to compute them; equal keys may share a forward pass."""

    key: Hashable
    rows: Sequence[Row]
    compute: Callable[[Sequence[Row]], Tensor]  # rows -> [len(rows), ...] on the CPU

    @property
    def tokens(self) -> int:
        """Tokens in the rows, unpadded."""
        return sum(len(r["input_ids"]) for r in self.rows)


def plan(lengths: Sequence[int], max_tokens: int,
         split_padding: int = SPLIT_PADDING_TOKENS) -> list[list[int]]:
    """Sub-batches of row indices, shortest rows first, each at most `max_tokens` padded
    tokens (a single longer row runs alone), cut where padding would exceed `split_padding`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        length = lengths[i]
        if current:
            padded = (len(current) + 1) * length
            added_padding = len(current) * (length - longest)
            if padded > max_tokens or added_padding > split_padding:
                batches.append(current)
                current = []
        current.append(i)
        longest = length
    if current:
        batches.append(current)
    return batches


def retry_after(queued_texts: int, texts_per_second: float) -> int:
    """Seconds until the queue has likely drained: 1 to 60."""
    if texts_per_second <= 0:
        return 1
    return max(1, min(_RETRY_AFTER_MAX, math.ceil(queued_texts / texts_per_second)))


def spread(batches: list[list[int]], ways: int) -> list[list[int]]:
    """`batches` (from `plan`) cut further, halving the one with most rows, until there are
    `ways` of them or every one is a single row: work for that many forward threads."""
    out = [list(b) for b in batches]
    while len(out) < ways:
        widest = max(range(len(out)), key=lambda k: len(out[k]), default=None)
        if widest is None or len(out[widest]) < 2:
            break
        rows = out[widest]
        out[widest:widest + 1] = [rows[:(len(rows) + 1) // 2], rows[(len(rows) + 1) // 2:]]
    return out


@dataclass(eq=False)
class _Pending:
    work: Work | None  # None: an opaque job that runs alone
    job: Callable[[], Any] | None
    size: int  # texts, for the queue bound
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    enqueued: float
    deadline: float
    parts: list[Tensor | None] = field(default_factory=list)
    missing: int = 0

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        """Answer the waiting request from any thread (ignored once it gave up)."""
        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)

        self.loop.call_soon_threadsafe(_set)


@dataclass(eq=False)
class _Sub:
    """Rows of one forward pass: (request, row index) pairs and how to compute them."""

    members: list[tuple[_Pending, int]]
    compute: Callable[[Sequence[Row]], Tensor]
    longest: int  # tokens of the longest row: the pass's padded width


class Batcher:
    """The queue and forward threads of one model."""

    def __init__(self, settings: Batching | None = None, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or Batching()
        self._metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._queued_texts = 0
        self._queued_tokens = 0
        self._rate = 0.0  # texts per second of forward time, smoothed
        self.max_batch_tokens = self.settings.max_batch_tokens or CPU_BATCH_TOKENS
        self.forward_threads = 1
        self._threads: list[threading.Thread] = []
        self._subs: deque[_Sub] = deque()  # sub-batches taken, waiting for a forward thread
        self._idle = 0  # forward threads waiting for work
        self._closed = False

    # -- the request side (event loop) --

    async def submit(self, work: Work) -> Tensor:
        """Rows of `work` computed, in order: [len(work.rows), ...]."""
        pending = self._enqueue(work, None, len(work.rows), work.tokens)
        result: Tensor = await self._wait(pending)
        return result

    async def call(self, job: Callable[[], T], size: int = 1) -> T:
        """`job()` on the forward thread, alone, in queue order (for unbatchable tasks)."""
        pending = self._enqueue(None, job, size, 0)
        result: T = await self._wait(pending)
        return result

    def _enqueue(self, work: Work | None, job: Callable[[], Any] | None, size: int,
                 tokens: int) -> _Pending:
        loop = asyncio.get_running_loop()
        now = self._clock()
        limit = self.settings.max_queued_texts
        pending = _Pending(work, job, size, loop.create_future(), loop, now,
                           now + self.settings.request_timeout_seconds)
        with self._cond:
            # An empty queue takes any request, so no valid request is refused forever.
            if self._queued_texts and self._queued_texts + size > limit:
                wait = retry_after(self._queued_texts, self._rate * self.forward_threads)
                raise QueueFull(
                    f"the batching queue holds {self._queued_texts} texts and this request "
                    f"has {size}; the limit is runtime.batching.maxQueuedTexts={limit}: "
                    f"retry in {wait} s, or add replicas", wait)
            self._queue.append(pending)
            self._queued_texts += size
            self._queued_tokens += tokens
            self._gauge()
            while len(self._threads) < self.forward_threads:
                thread = threading.Thread(target=self._loop, daemon=True,
                                          name=f"forward-{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
            self._cond.notify()
        return pending

    async def _wait(self, pending: _Pending) -> Any:
        timeout = pending.deadline - self._clock()
        try:
            return await asyncio.wait_for(pending.future, timeout=max(0.0, timeout))
        except TimeoutError:
            raise self._late(pending) from None

    def _late(self, pending: _Pending) -> DeadlineExceeded:
        waited = self._clock() - pending.enqueued
        limit = self.settings.request_timeout_seconds
        return DeadlineExceeded(
            f"the request was not answered within runtime.batching.requestTimeoutSeconds="
            f"{limit} (it waited {waited:.2f} s): the server is overloaded; retry, send "
            "fewer texts per request, raise requestTimeoutSeconds or add replicas")

    def fit(self, device_type: str, forward_threads: int = 1) -> None:
        """Take the token budget of the model's device when the settings leave it unset, and
        the number of forward threads (before the first request)."""
        self.forward_threads = max(1, forward_threads)
        if self.settings.max_batch_tokens is None:
            self.max_batch_tokens = GPU_BATCH_TOKENS if device_type == "cuda" else (
                CPU_BATCH_TOKENS)

    def close(self) -> None:
        """Stop the forward threads after their batches in progress."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the forward thread --

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._queued_texts)

    def _loop(self) -> None:
        while True:
            batch: list[_Pending] = []
            with self._cond:
                self._idle += 1
                while not self._subs and not self._queue and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if self._closed:
                    return
                sub = self._subs.popleft() if self._subs else None
                if sub is None:
                    self._gather()
                    batch = self._take()
            try:
                if sub is not None:
                    self._compute(sub)
                else:
                    self._run(batch)
            except Exception as error:  # never let a forward thread die
                log.exception("batch failed")
                for pending in batch if sub is None else [p for p, _ in sub.members]:
                    pending.settle(error=error)

    def _gather(self) -> None:
        """Wait (lock held) up to max_wait after the oldest arrival while the batch is short."""
        wait = self.settings.max_wait_milliseconds / 1000
        until = self._queue[0].enqueued + wait
        while (self._queued_tokens < self.max_batch_tokens and not self._closed
               and (left := until - self._clock()) > 0):
            self._cond.wait(left)

    def _take(self) -> list[_Pending]:
        """The oldest live request and the queued ones of its key, within max_batch_tokens
        (an opaque job alone); requests past their deadline are answered with the error."""
        now = self._clock()
        taken: list[_Pending] = []
        kept: deque[_Pending] = deque()
        tokens = 0
        for pending in self._queue:
            if pending.future.done() or now >= pending.deadline:
                self._dequeued(pending)
                if not pending.future.done():
                    pending.settle(error=self._late(pending))
                continue
            head = taken[0].work if taken else None
            work = pending.work
            if taken and (head is None or work is None or work.key != head.key
                          or tokens + work.tokens > self.max_batch_tokens):
                kept.append(pending)
                continue
            taken.append(pending)
            tokens += work.tokens if work is not None else 0
            self._dequeued(pending)
            if self._metrics is not None:
                self._metrics.queue_seconds.observe(now - pending.enqueued)
        self._queue = kept
        self._gauge()
        return taken

    def _dequeued(self, pending: _Pending) -> None:
        self._queued_texts -= pending.size
        self._queued_tokens -= pending.work.tokens if pending.work is not None else 0

    def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        started = self._clock()
        first = batch[0]
        if first.work is None:
            assert first.job is not None
            try:
                first.settle(first.job())
            except Exception as error:  # answered to the request, which maps it to a status
                first.settle(error=error)
            self._observe_rate(first.size, self._clock() - started)
            return
        rows: list[tuple[_Pending, int]] = []
        for pending in batch:
            assert pending.work is not None
            pending.parts = [None] * len(pending.work.rows)
            pending.missing = len(pending.work.rows)
            if not pending.work.rows:
                pending.settle(error=ValueError("a request without inputs has no answer"))
            rows.extend((pending, i) for i in range(len(pending.work.rows)))
        lengths = [len(p.work.rows[i]["input_ids"]) for p, i in rows if p.work is not None]
        if not rows:
            return
        with self._cond:
            # Idle forward threads take a share of this batch instead of waiting for the next.
            subs = [_Sub([rows[i] for i in sub], first.work.compute, max(lengths[i] for i in sub))
                    for sub in spread(plan(lengths, self.max_batch_tokens), 1 + self._idle)]
            self._subs.extend(subs[1:])
            if len(subs) > 1:  # all: a thread gathering a batch waits on the same condition
                self._cond.notify_all()
        self._compute(subs[0])

    def _compute(self, sub: _Sub) -> None:
        """One sub-batch through the model; each request answered once all its rows are."""
        started = self._clock()
        with self._cond:
            live = [(p, i) for p, i in sub.members if p.missing > 0 and not p.future.done()]
        if not live:
            return
        try:
            out = sub.compute([p.work.rows[i] for p, i in live if p.work is not None])
        except Exception as error:
            with self._cond:
                failed = {p for p, _ in live if p.missing > 0}
                for pending in failed:
                    pending.missing = -1
            for pending in failed:
                pending.settle(error=error)
            return
        if self._metrics is not None:
            self._metrics.batch_texts.observe(len(live))
            self._metrics.batch_tokens.observe(len(live) * sub.longest)
        done: list[_Pending] = []
        with self._cond:
            for (pending, i), row in zip(live, out, strict=True):
                if pending.missing > 0:
                    pending.parts[i] = row
                    pending.missing -= 1
                    if pending.missing == 0:
                        done.append(pending)
        for pending in done:
            self._answer(pending)
        self._observe_rate(len(live), self._clock() - started)

    @staticmethod
    def _answer(pending: _Pending) -> None:
        import torch

        pending.settle(torch.stack([p for p in pending.parts if p is not None]))

    def _observe_rate(self, texts: int, seconds: float) -> None:
        """Texts per second of one forward thread, smoothed (Retry-After counts them all)."""
        if seconds > 0:
            rate = texts / seconds
            with self._cond:
                self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
