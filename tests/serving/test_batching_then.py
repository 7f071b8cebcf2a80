"""The batcher's callback path (``predict_then``: a sandboxed model): batches are sent from
loop callbacks and delivered from the answer's callback, with the same policy as the other
paths, and every caller gets exactly its own rows' answer or the batch's error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.core.errors import DeadlineExceeded
from ml_platform.serving.plane.batching import Batcher, Outcome
from ml_platform.serving.runtimes.base import Prediction


class LaterModel:
    """Answers each call on a later loop turn (or after ``delays`` seconds), as a sandbox
    connection does; never calls back before ``predict_then`` returns."""

    def __init__(self, delays: list[float] | None = None) -> None:
        self.batches: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.delays = list(delays or [])
        self.fail: Exception | None = None
        self.refuse: Exception | None = None

    def predict_then(self, rows: np.ndarray, then: Callable[[Outcome], None]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.batches.append(rows.shape[0])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        outcome: Outcome = self.fail if self.fail is not None else Prediction(rows.sum(axis=1))

        def answer() -> None:
            self.in_flight -= 1
            then(outcome)

        delay = self.delays.pop(0) if self.delays else 0.0
        asyncio.get_running_loop().call_later(delay, answer)

    async def awaited(self, rows: np.ndarray) -> Prediction:
        raise AssertionError("the callback path must not await the model")


def batcher(model: LaterModel, max_batch_size: int = 64, delay_ms: float = 0) -> Batcher:
    return Batcher(
        model.awaited,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=delay_ms,
        predict_then=model.predict_then,
    )


async def test_one_turn_is_one_call_and_what_queues_meanwhile_goes_next_capped() -> None:
    model = LaterModel(delays=[0.05])
    b = batcher(model, max_batch_size=4)
    first = [asyncio.ensure_future(b.submit(np.full((1, 2), float(i)))) for i in range(3)]
    await asyncio.sleep(0.01)  # the first call is in flight
    later = [asyncio.ensure_future(b.submit(np.full((1, 2), float(i)))) for i in range(3, 9)]
    results = await asyncio.wait_for(asyncio.gather(*first, *later), 30)
    assert [r.values.tolist() for r in results] == [[2.0 * i] for i in range(9)]
    assert model.batches == [3, 4, 2]
    assert model.most_in_flight == 1  # one call at a time, as the other paths
    assert (b.calls, b.rows) == (3, 9)
    assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]  # not left running


async def test_a_multi_row_submission_is_never_split() -> None:
    model = LaterModel()
    b = batcher(model, max_batch_size=4)
    results = await asyncio.gather(b.submit(np.ones((3, 2))), b.submit(np.ones((6, 2))))
    assert [r.values.shape[0] for r in results] == [3, 6]
    assert model.batches == [3, 6]


async def test_an_error_reaches_every_caller_of_the_batch_and_the_batcher_goes_on() -> None:
    model = LaterModel()
    model.fail = ValueError("model failed")
    b = batcher(model)
    outcomes = await asyncio.gather(
        *(b.submit(np.ones((1, 2))) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, ValueError) and str(o) == "model failed" for o in outcomes)
    model.fail = None
    assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]


async def test_a_call_refused_before_sending_reaches_every_caller() -> None:
    model = LaterModel()
    model.refuse = ValueError("expected rows of 3 features")
    b = batcher(model)
    outcomes = await asyncio.gather(
        *(b.submit(np.ones((1, 2))) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(o, ValueError) for o in outcomes)
    model.refuse = None
    assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]


async def test_an_expired_submission_is_never_sent() -> None:
    model = LaterModel(delays=[0.05])
    b = batcher(model)
    running = asyncio.ensure_future(b.submit(np.ones((1, 2))))
    await asyncio.sleep(0.01)
    expired = asyncio.ensure_future(b.submit(np.full((1, 2), 5.0), deadline=time.monotonic()))
    alive = asyncio.ensure_future(b.submit(np.full((1, 2), 7.0)))
    await running
    assert (await alive).values.tolist() == [14.0]
    outcome = await asyncio.gather(expired, return_exceptions=True)
    assert isinstance(outcome[0], DeadlineExceeded)
    assert model.batches == [1, 1] and b.expired == 1


async def test_after_a_real_batch_the_next_waits_for_as_many_then_goes_at_once() -> None:
    model = LaterModel()
    b = batcher(model, delay_ms=60_000)  # the test would hang if the batcher waited this long
    await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(3)))
    wave = [asyncio.ensure_future(b.submit(np.full((1, 2), float(i)))) for i in (5, 6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert model.batches == [3]  # gathering: 2 of the expected 3
    last = asyncio.ensure_future(b.submit(np.full((1, 2), 7.0)))
    results = await asyncio.wait_for(asyncio.gather(*wave, last), 30)
    assert [r.values.tolist() for r in results] == [[10.0], [12.0], [14.0]]
    assert model.batches == [3, 3]


@settings(max_examples=40, deadline=None)
@given(
    waves=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=8), min_size=1, max_size=6),
    delays=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.003]), max_size=20),
    max_rows=st.integers(1, 12),
)
def test_every_caller_gets_its_own_rows_whatever_the_timing(
    waves: list[list[int]], delays: list[float], max_rows: int
) -> None:
    async def scenario() -> None:
        model = LaterModel(delays=delays)
        b = batcher(model, max_batch_size=max_rows, delay_ms=1)
        calls: list[tuple[np.ndarray, asyncio.Future[Prediction]]] = []
        seed = 0
        for wave in waves:
            for n in wave:
                rows = np.arange(seed, seed + 2 * n, dtype=np.float64).reshape(n, 2)
                seed += 2 * n
                calls.append((rows, asyncio.ensure_future(b.submit(rows))))
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*(f for _, f in calls)), 30)
        for (rows, _), result in zip(calls, results, strict=True):
            assert result.values.tolist() == rows.sum(axis=1).tolist()
        assert sum(model.batches) == sum(map(sum, waves))
        assert model.most_in_flight == 1
        # a batch holds at most max_rows rows, unless one submission alone is larger
        assert all(rows <= max(max_rows, 5) for rows in model.batches)
        assert b.calls == len(model.batches)

    asyncio.run(scenario())
