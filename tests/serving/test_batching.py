"""Dynamic batching policy, with a real (tiny) vectorized function and no timing assertions."""

from __future__ import annotations

import asyncio

import numpy as np

from ml_platform.serving.plane.batching import Batcher
from ml_platform.serving.runtimes.base import Prediction


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, rows: np.ndarray) -> Prediction:
        self.batches.append(rows.shape[0])
        await self.gate.wait()
        return Prediction(rows.sum(axis=1))


async def test_a_lone_request_is_dispatched_without_waiting_for_a_batch() -> None:
    rec = Recorder()
    batcher = Batcher(rec, max_batch_size=32, max_batch_delay_ms=10_000)
    out = await batcher.submit(np.ones((1, 3)))
    assert out.values.tolist() == [3.0]
    assert rec.batches == [1]  # a 10 s delay setting did not hold a lone request back


async def test_requests_queued_behind_a_running_call_become_one_call() -> None:
    rec = Recorder()
    batcher = Batcher(rec, max_batch_size=8, max_batch_delay_ms=0)
    rec.gate.clear()
    first = asyncio.ensure_future(batcher.submit(np.full((1, 2), 1.0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(np.full((1, 2), float(i)))) for i in range(2, 12)]
    await asyncio.sleep(0)
    rec.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [r.values.tolist() for r in results] == [[2.0]] + [[2.0 * i] for i in range(2, 12)]
    assert rec.batches == [1, 8, 2]  # capped at max_batch_size, answered individually


async def test_a_multi_row_submission_is_never_split_and_errors_reach_every_caller() -> None:
    async def boom(rows: np.ndarray) -> Prediction:
        raise ValueError("model failed")

    rec = Recorder()
    assert (
        await Batcher(rec, max_batch_size=4, max_batch_delay_ms=0).submit(np.ones((100, 2)))
    ).values.shape == (100,)
    assert rec.batches == [100]
    failing = Batcher(boom, max_batch_size=4, max_batch_delay_ms=0)
    results = await asyncio.gather(
        *(failing.submit(np.ones((1, 2))) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)


async def test_under_load_the_dispatcher_waits_for_the_previous_batch_size_then_goes_at_once() -> (
    None
):
    rec = Recorder()
    # A deadline this long would hang the test if the dispatcher waited for it.
    batcher = Batcher(rec, max_batch_size=64, max_batch_delay_ms=60_000)
    rec.gate.clear()
    first = asyncio.ensure_future(batcher.submit(np.full((1, 2), 1.0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    wave = [asyncio.ensure_future(batcher.submit(np.full((1, 2), float(i)))) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    rec.gate.set()
    await asyncio.gather(first, *wave)
    assert rec.batches == [1, 3]  # the queued wave became one call of 3 requests

    # The next wave: the first arrival waits (a batch of 3 just ran) until 3 have arrived.
    second = [asyncio.ensure_future(batcher.submit(np.full((1, 2), float(i)))) for i in (5, 6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert rec.batches == [1, 3]  # still gathering: 2 of the expected 3
    last = asyncio.ensure_future(batcher.submit(np.full((1, 2), 7.0)))
    results = await asyncio.wait_for(asyncio.gather(*second, last), 30)
    assert [r.values.tolist() for r in results] == [[10.0], [12.0], [14.0]]
    assert rec.batches == [1, 3, 3]
