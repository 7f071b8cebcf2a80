"""The batcher's inline path (a cheap model run on the event loop by callbacks): the same
policy as the model-thread path, without a task per batch."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ml_platform.core.errors import DeadlineExceeded
from ml_platform.serving.plane.batching import INLINE_BELOW_SECONDS, Batcher
from ml_platform.serving.runtimes.base import Prediction


class Model:
    """A vectorized function callable inline or awaited (as the model thread would)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.inline_batches: list[int] = []
        self.awaited_batches: list[int] = []
        self.seconds = seconds
        self.fail = False

    def inline(self, rows: np.ndarray) -> Prediction:
        self.inline_batches.append(rows.shape[0])
        if self.seconds:
            time.sleep(self.seconds)
        if self.fail:
            raise ValueError("model failed")
        return Prediction(rows.sum(axis=1))

    async def awaited(self, rows: np.ndarray) -> Prediction:
        self.awaited_batches.append(rows.shape[0])
        return Prediction(rows.sum(axis=1))


def batcher(model: Model, max_batch_size: int = 64, delay_ms: float = 0) -> Batcher:
    return Batcher(
        model.awaited,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=delay_ms,
        predict_inline=model.inline,
    )


async def test_submissions_of_one_loop_turn_become_one_inline_call_capped_at_max_rows() -> None:
    model = Model()
    b = batcher(model, max_batch_size=4)
    results = await asyncio.gather(*(b.submit(np.full((1, 2), float(i))) for i in range(10)))
    assert [r.values.tolist() for r in results] == [[2.0 * i] for i in range(10)]
    assert model.inline_batches == [4, 4, 2]  # the rest dispatched on the following turns
    assert model.awaited_batches == []
    assert (b.calls, b.rows) == (3, 10)
    assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]  # not left running


async def test_an_inline_batch_waits_for_the_previous_batch_size_then_goes_at_once() -> None:
    model = Model()
    b = batcher(model, delay_ms=60_000)  # the test would hang if the batcher waited this long
    await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(3)))
    assert model.inline_batches == [3]
    wave = [asyncio.ensure_future(b.submit(np.full((1, 2), float(i)))) for i in (5, 6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert model.inline_batches == [3]  # gathering: 2 of the expected 3
    last = asyncio.ensure_future(b.submit(np.full((1, 2), 7.0)))
    results = await asyncio.wait_for(asyncio.gather(*wave, last), 30)
    assert [r.values.tolist() for r in results] == [[10.0], [12.0], [14.0]]
    assert model.inline_batches == [3, 3]


async def test_an_inline_wait_ends_at_max_batch_delay_with_fewer_requests() -> None:
    model = Model()
    b = batcher(model, delay_ms=20)
    await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(3)))
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(2))), 30
    )
    assert time.monotonic() - started >= 0.015  # it did wait (for a third request)
    assert [r.values.tolist() for r in results] == [[2.0], [2.0]]
    assert model.inline_batches == [3, 2]


async def test_an_inline_model_error_reaches_every_caller_and_the_batcher_goes_on() -> None:
    model = Model()
    model.fail = True
    b = batcher(model)
    results = await asyncio.gather(
        *(b.submit(np.ones((1, 2))) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)
    model.fail = False
    assert (await asyncio.wait_for(b.submit(np.ones((1, 2))), 30)).values.tolist() == [2.0]


async def test_an_expired_submission_is_dropped_before_the_inline_call() -> None:
    model = Model()
    b = batcher(model)
    gone, kept = await asyncio.gather(
        b.submit(np.ones((1, 2)), deadline=time.monotonic() - 1),
        b.submit(np.full((1, 2), 2.0)),
        return_exceptions=True,
    )
    assert isinstance(gone, DeadlineExceeded)
    assert isinstance(kept, Prediction) and kept.values.tolist() == [4.0]
    assert model.inline_batches == [1] and b.expired == 1


@pytest.mark.parametrize("seconds", [0.01])
async def test_a_model_that_turns_out_slow_moves_to_the_awaited_path(seconds: float) -> None:
    model = Model(seconds)
    b = batcher(model)
    assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]
    results = await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(3)))
    assert [r.values.tolist() for r in results] == [[2.0]] * 3
    assert model.inline_batches == [1]  # measured once on the loop: too slow for it
    assert sum(model.awaited_batches) == 3


async def test_a_model_in_the_model_thread_is_timed_there_and_comes_back_when_cheap() -> None:
    """The hand-off to the model thread and back, and what the loop runs meanwhile, are not
    the model's cost: a model that became cheap returns to the loop even when every call in
    the thread takes the loop much longer than the threshold to see answered."""
    loop = asyncio.get_running_loop()
    ran_in: list[str] = []
    cost = {"seconds": 3 * INLINE_BELOW_SECONDS}

    def model(rows: np.ndarray) -> Prediction:
        where = threading.current_thread().name
        ran_in.append(where)
        if where != "MainThread" and not cost["seconds"]:
            # the loop is busy for 20x the threshold before it sees this call's answer
            loop.call_soon_threadsafe(time.sleep, 20 * INLINE_BELOW_SECONDS)
        time.sleep(cost["seconds"])
        return Prediction(rows.sum(axis=1))

    with ThreadPoolExecutor(1, thread_name_prefix="model") as executor:
        b = Batcher(
            None, max_batch_size=8, max_batch_delay_ms=0, predict_inline=model, executor=executor
        )
        while not ran_in or ran_in[-1] == "MainThread":  # slow: inline until measured so
            assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]
            assert len(ran_in) < 50, "a 3 ms model never left the loop"
        cost["seconds"] = 0.0
        for _ in range(50):  # each measured in the thread: the average falls below the bar
            assert (await b.submit(np.ones((1, 2)))).values.tolist() == [2.0]
            if ran_in[-1] == "MainThread":
                break
    # timed on the loop, every call in the thread would count the loop's 20x: never back
    assert ran_in[-1] == "MainThread", f"a cheap model stayed in the thread: {ran_in}"


def test_a_batcher_needs_a_way_to_predict() -> None:
    with pytest.raises(ValueError, match="predict_inline with an executor"):
        Batcher(None, max_batch_size=8, max_batch_delay_ms=0, predict_inline=Model().inline)
