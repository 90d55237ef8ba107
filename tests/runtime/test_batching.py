"""The batching module alone: how rows are cut into sub-batches, the Retry-After estimate,
and the queue's order, grouping, bound and deadlines with a recording compute function
(the real model behind the real server: tests/runtime/reference/test_batched_reference.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_contract.config import Batching
from modeldeploy_runtime import batching
from modeldeploy_runtime.batching import Batcher, DeadlineExceeded, QueueFull, Work
from modeldeploy_runtime.tokenizer import Row, pad


@given(st.lists(st.integers(1, 512), max_size=300), st.integers(16, 20000))
def test_sub_batches_cover_every_row_once_shortest_first_within_the_token_budget(
    lengths: list[int], budget: int,
) -> None:
    batches = batching.plan(lengths, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        padded = len(b) * max(lengths[i] for i in b)
        assert padded <= budget or len(b) == 1


def test_a_long_text_does_not_pad_a_batch_of_short_ones() -> None:
    lengths = [12] * 40 + [200]
    batches = batching.plan(lengths, max_tokens=16384)
    assert batches == [list(range(40)), [40]]
    # Equal lengths need no cut however many there are.
    assert batching.plan([30] * 100, max_tokens=16384) == [list(range(100))]


def test_retry_after_is_the_time_to_drain_the_queue_bounded() -> None:
    assert batching.retry_after(100, 50.0) == 2
    assert batching.retry_after(1, 1000.0) == 1
    assert batching.retry_after(10**6, 1.0) == 60
    assert batching.retry_after(5, 0.0) == 1


def test_rows_are_padded_right_or_left_with_each_keys_pad_value() -> None:
    rows: list[Row] = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1]},
                       {"input_ids": [8], "attention_mask": [1]}]
    assert pad(rows, {"input_ids": 1}) == {"input_ids": [[5, 6, 7], [8, 1, 1]],
                                           "attention_mask": [[1, 1, 1], [1, 0, 0]]}
    assert pad(rows, {"input_ids": 1}, left=True)["input_ids"][1] == [1, 1, 8]


class _Recorder:
    """A compute function that answers each row with its first token id and records the
    batches it was given; `gate` holds the forward thread until the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, rows: Sequence[Row]) -> torch.Tensor:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([r["input_ids"][0] for r in rows])
        return torch.tensor([[float(r["input_ids"][0])] for r in rows])


def _work(compute: _Recorder, ids: list[int], key: str = "k", length: int = 3) -> Work:
    return Work(key, [{"input_ids": [i] * length, "attention_mask": [1] * length}
                      for i in ids], compute)


def test_queued_requests_share_a_pass_and_each_gets_its_own_rows_in_order() -> None:
    async def scenario() -> None:
        compute = _Recorder()
        batcher = Batcher(Batching(max_wait_milliseconds=0))
        compute.gate.clear()
        first = asyncio.ensure_future(batcher.submit(_work(compute, [1])))
        await asyncio.to_thread(compute.entered.wait, 10)  # the thread is busy with `first`
        others = [asyncio.ensure_future(batcher.submit(_work(compute, [10 * i + j
                                                                       for j in range(i)])))
                  for i in range(2, 6)]
        await asyncio.sleep(0.05)
        compute.gate.set()
        assert (await first).tolist() == [[1.0]]
        for i, future in enumerate(others, start=2):
            assert (await future)[:, 0].tolist() == [10 * i + j for j in range(i)]
        assert compute.batches[0] == [1]
        assert len(compute.batches) == 2  # the four queued requests ran as one pass
        batcher.close()

    asyncio.run(scenario())


def test_requests_of_different_keys_never_share_a_pass() -> None:
    async def scenario() -> None:
        compute = _Recorder()
        batcher = Batcher(Batching())
        compute.gate.clear()
        first = asyncio.ensure_future(batcher.submit(_work(compute, [1])))
        await asyncio.to_thread(compute.entered.wait, 10)
        a = asyncio.ensure_future(batcher.submit(_work(compute, [2], key="a")))
        b = asyncio.ensure_future(batcher.submit(_work(compute, [3], key="b")))
        c = asyncio.ensure_future(batcher.submit(_work(compute, [4], key="a")))
        await asyncio.sleep(0.05)
        compute.gate.set()
        await asyncio.gather(first, a, b, c)
        assert compute.batches == [[1], [2, 4], [3]]
        batcher.close()

    asyncio.run(scenario())


def test_forward_threads_run_their_passes_at_the_same_time() -> None:
    async def scenario() -> None:
        both_inside = threading.Barrier(2, timeout=10)  # broken unless two passes overlap

        def compute(rows: Sequence[Row]) -> torch.Tensor:
            both_inside.wait()
            return torch.tensor([[float(r["input_ids"][0])] for r in rows])

        batcher = Batcher(Batching(max_wait_milliseconds=0))
        batcher.fit("cpu", forward_threads=2)
        one = asyncio.ensure_future(batcher.submit(Work("k", [{"input_ids": [1]}], compute)))
        await asyncio.sleep(0.05)  # the first thread is inside its pass before the second
        two = batcher.submit(Work("k", [{"input_ids": [2]}], compute))
        assert [(await f).tolist() for f in (one, asyncio.ensure_future(two))] == [
            [[1.0]], [[2.0]]]
        batcher.close()

    asyncio.run(scenario())


def test_with_every_forward_thread_busy_queued_requests_still_share_one_pass() -> None:
    async def scenario() -> None:
        compute = _Recorder()
        batcher = Batcher(Batching(max_wait_milliseconds=0))
        batcher.fit("cpu", forward_threads=2)
        compute.gate.clear()
        busy = [asyncio.ensure_future(batcher.submit(_work(compute, [i]))) for i in (1, 2)]
        await asyncio.sleep(0.1)  # both threads took one request each and wait at the gate
        queued = [asyncio.ensure_future(batcher.submit(_work(compute, [i]))) for i in (3, 4, 5)]
        await asyncio.sleep(0.05)
        compute.gate.set()
        answers = await asyncio.gather(*busy, *queued)
        assert [a.tolist() for a in answers] == [[[float(i)]] for i in range(1, 6)]
        # One thread takes all three queued requests; the other, if idle by then, computes
        # a share of them: two passes at most, never one each.
        later = [b for b in compute.batches if b not in ([1], [2])]
        assert len(compute.batches) - len(later) == 2
        assert len(later) <= 2 and sorted(i for b in later for i in b) == [3, 4, 5]
        batcher.close()

    asyncio.run(scenario())


def test_an_idle_forward_thread_computes_a_share_of_anothers_batch() -> None:
    async def scenario() -> None:
        both_inside = threading.Barrier(2, timeout=10)  # broken unless the halves overlap
        batches: list[list[int]] = []

        def compute(rows: Sequence[Row]) -> torch.Tensor:
            if len(rows) > 1 or batches:
                both_inside.wait()
            batches.append([r["input_ids"][0] for r in rows])
            return torch.tensor([[float(r["input_ids"][0])] for r in rows])

        batcher = Batcher(Batching(max_wait_milliseconds=0))
        batcher.fit("cpu", forward_threads=2)
        await batcher.submit(Work("k", [{"input_ids": [0]}], compute))  # both threads up
        await asyncio.sleep(0.1)  # and both idle again
        rows = [{"input_ids": [i, 0, 0][:1 + i % 3]} for i in range(1, 7)]
        assert (await batcher.submit(Work("k", rows, compute)))[:, 0].tolist() == [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        assert sorted(len(b) for b in batches[1:]) == [3, 3]
        batcher.close()

    asyncio.run(scenario())


@given(st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=20), max_size=6),
       st.integers(1, 8))
def test_spreading_cuts_batches_into_as_many_as_asked_keeping_every_row_once(
    batches: list[list[int]], ways: int,
) -> None:
    out = batching.spread(batches, ways)
    assert [i for b in out for i in b] == [i for b in batches for i in b]  # order kept
    assert all(out)
    rows = sum(map(len, batches))
    assert len(out) == max(len(batches), min(ways, rows))


def test_a_full_queue_refuses_with_a_retry_delay_and_an_empty_one_takes_any_size() -> None:
    async def scenario() -> None:
        compute = _Recorder()
        batcher = Batcher(Batching(max_queued_texts=3))
        compute.gate.clear()
        running = asyncio.ensure_future(batcher.submit(_work(compute, [1, 2, 3, 4, 5])))
        await asyncio.to_thread(compute.entered.wait, 10)
        queued = asyncio.ensure_future(batcher.submit(_work(compute, [6, 7])))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(_work(compute, [8, 9]))
        assert refused.value.retry_after >= 1 and "maxQueuedTexts=3" in str(refused.value)
        compute.gate.set()
        await asyncio.gather(running, queued)
        batcher.close()

    asyncio.run(scenario())


def test_a_request_past_its_deadline_is_refused_and_never_computed() -> None:
    async def scenario() -> None:
        compute = _Recorder()
        batcher = Batcher(Batching(request_timeout_seconds=0.2))
        compute.gate.clear()
        running = asyncio.ensure_future(batcher.submit(_work(compute, [1])))
        await asyncio.to_thread(compute.entered.wait, 10)
        with pytest.raises(DeadlineExceeded, match=r"requestTimeoutSeconds=0\.2"):
            await batcher.submit(_work(compute, [2]))
        with pytest.raises(DeadlineExceeded):
            await running  # its pass is still running: an error, not a late answer
        compute.gate.set()
        after = await batcher.submit(_work(compute, [3]))
        assert after.tolist() == [[3.0]]
        assert compute.batches == [[1], [3]]
        batcher.close()

    asyncio.run(scenario())


def test_a_failing_pass_fails_its_requests_and_the_next_one_is_served() -> None:
    calls = []

    def flaky(rows: Sequence[Row]) -> torch.Tensor:
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return torch.zeros(len(rows), 1)

    async def scenario() -> None:
        batcher = Batcher(Batching())
        work = Work("k", [{"input_ids": [1], "attention_mask": [1]}], flaky)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(work)
        assert (await batcher.submit(work)).shape == (1, 1)
        assert await batcher.call(lambda: "alone") == "alone"
        batcher.close()

    asyncio.run(scenario())


def test_an_unset_token_budget_follows_the_device_and_a_set_one_stays() -> None:
    unset = Batcher(Batching())
    assert unset.max_batch_tokens == batching.CPU_BATCH_TOKENS
    unset.fit("cuda")
    assert unset.max_batch_tokens == batching.GPU_BATCH_TOKENS
    chosen = Batcher(Batching(max_batch_tokens=512))
    chosen.fit("cuda")
    assert chosen.max_batch_tokens == 512
