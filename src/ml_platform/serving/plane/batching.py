"""Dynamic batching: concurrent requests for one model become one vectorized call.

The policy never delays a lone request: when the model is idle, a submission is dispatched
on the next loop iteration (which also picks up anything that arrived in the same
iteration). While a call runs, new submissions queue; when it returns, everything queued (up
to ``max_batch_size`` rows) goes in the next call. ``max_batch_delay_ms`` only applies under
load: if the previous call was a real batch (more than one request) and fewer requests are
queued than it carried, the dispatcher waits at most that long for as many to arrive (or for
``max_batch_size`` rows), and dispatches the moment they have. Closed-loop clients answered
by one batch send their next requests together, so the wait usually ends well before the
deadline. A submission of many rows (``PredictBatch``) is never split. A submission whose
caller gave up (cancelled) or whose deadline passed while it queued is dropped when the next
batch is taken: the model never predicts rows nobody waits for.

Cheap models run inline on the event loop, so nothing queues behind a running call and
requests reach the batcher one loop turn apart: without that short wait, batches stay at one
row under load. Their batches are driven by loop callbacks (``call_soon`` for the next turn,
``call_later`` for the wait), with no task and no extra await per batch. A model in a
sandbox is driven the same way when it can answer through a callback (``predict_then``: the
batch is sent from a loop callback and its answer delivered from the connection's read
callback); a model that runs in the model thread is awaited by one task while requests keep
coming.

"Cheap" is the model's own time per call (a moving average, against
``INLINE_BELOW_SECONDS``). A batch run in the model thread is timed in that thread, so the
hand-off there and back (and whatever else the loop ran meanwhile) never makes a cheap model
look slow and keeps it off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

import numpy as np

from ml_platform.core.errors import DeadlineExceeded
from ml_platform.serving.runtimes.base import FloatArray, Prediction

logger = logging.getLogger(__name__)

PredictFn = Callable[[FloatArray], Awaitable[Prediction]]
InlineFn = Callable[[FloatArray], Prediction]
Outcome = Prediction | BaseException
ThenFn = Callable[[FloatArray, Callable[[Outcome], None]], None]
"""Start predicting the rows; the callback gets the prediction or the error, exactly once,
on the event loop thread, never before this returns."""
Item = tuple[FloatArray, "asyncio.Future[Prediction]", float | None]
"""A queued submission: its rows, its caller's future and deadline (``time.monotonic()``)."""

INLINE_BELOW_SECONDS = 0.001
"""Models whose calls take less than this run on the event loop thread: a hand-off to the
model thread (wake-up, GIL exchange, wake-up back) costs more than the call itself."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _timed_call(fn: InlineFn, rows: FloatArray) -> tuple[Prediction, float]:
    """``fn(rows)`` and the seconds it took, measured where it runs (the model thread)."""
    started = time.perf_counter()
    result = fn(rows)
    return result, time.perf_counter() - started


class Batcher:
    """Gathers submissions for one loaded model and runs them through ``predict``.

    ``predict`` is awaited once per batch (None: a local model given ``predict_inline`` and
    ``executor``). ``predict_inline`` (a local model) is called on the loop itself while it
    is cheap; with ``executor`` (the worker's model thread), a batch it is too slow for runs
    there instead, timed in that thread, so the event loop keeps accepting requests
    meanwhile. ``predict_then`` (a sandboxed model: a round trip to the tenant's process)
    sends the batch and answers through a callback; either, when given, drives the batches
    instead of ``predict``.
    """

    def __init__(
        self,
        predict: PredictFn | None,
        *,
        max_batch_size: int,
        max_batch_delay_ms: float,
        predict_inline: InlineFn | None = None,
        predict_then: ThenFn | None = None,
        executor: Executor | None = None,
    ) -> None:
        if predict is None and (predict_inline is None or executor is None):
            raise ValueError("a Batcher needs predict, or predict_inline with an executor")
        self._predict = predict
        self._inline = predict_inline
        self._then = predict_then
        self._executor = executor if predict_inline is not None else None
        self._call_seconds = 0.0  # moving average of one model call
        self._max_rows = max(1, max_batch_size)
        self._delay = max(0.0, max_batch_delay_ms) / 1000.0
        self._queue: list[Item] = []
        self._queued_rows = 0
        self._running = False
        self._last_batch_requests = 0
        self._last_batch_end = 0.0
        self._filled: asyncio.Future[None] | None = None  # set while _drain waits for more
        self._timer: asyncio.TimerHandle | None = None  # set while a callback batch waits
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # model calls and the rows they carried, for health details and tests
        self.rows = 0
        self.expired = 0  # submissions dropped unpredicted: their caller's deadline had passed
        self.on_batch: Callable[[int], None] = lambda _rows: None  # rows per call (metrics)

    async def submit(self, rows: FloatArray, deadline: float | None = None) -> Prediction:
        """Predict ``rows`` (2-D), possibly together with other callers' rows; ``deadline``
        (``time.monotonic()``) is when the caller stops waiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Prediction] = loop.create_future()
        self._queue.append((rows, fut, deadline))
        self._queued_rows += rows.shape[0]
        if not self._running:
            self._running = True
            if self._then is not None:
                loop.call_soon(self._dispatch_then, loop)  # same one-turn join as inline
            elif self._runs_inline():
                # One loop turn first lets requests whose messages already arrived join.
                loop.call_soon(self._dispatch, loop)
            else:
                self._task = loop.create_task(self._drain())
        elif self._timer is not None and self._batch_is_full():
            self._timer.cancel()
            self._timer = None
            if self._then is not None:
                loop.call_soon(self._send_then_batch, loop)
            else:
                loop.call_soon(self._run_inline_batch, loop)
        elif self._filled is not None and not self._filled.done() and self._batch_is_full():
            self._filled.set_result(None)
        return await fut

    def _runs_inline(self) -> bool:
        return self._inline is not None and self._call_seconds < INLINE_BELOW_SECONDS

    def _batch_is_full(self) -> bool:
        return self._queued_rows >= self._max_rows or len(self._queue) >= self._last_batch_requests

    def _should_wait(self, loop: asyncio.AbstractEventLoop) -> bool:
        """After a real batch, whether to wait (``max_batch_delay_ms``) for more to queue."""
        if self._delay > 0 and self._last_batch_requests > 1:
            if loop.time() - self._last_batch_end > self._delay:
                self._last_batch_requests = 0  # idle since: a lone request never waits
            elif not self._batch_is_full():
                return True
        return False

    # -- a cheap model: loop callbacks, no task and no extra awaits per batch ------------------

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queue:
            self._running = False
        elif not self._runs_inline():  # the model became slow: hand over to the model thread
            self._task = loop.create_task(self._drain())
        elif self._should_wait(loop):
            self._timer = loop.call_later(self._delay, self._run_inline_batch, loop)
        else:
            self._run_inline_batch(loop)

    def _run_inline_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the next batch and predict it on the loop thread; what remains queued (a
        batch is at most ``max_batch_size`` rows) is dispatched on the next loop turn."""
        self._timer = None
        try:
            batch = self._take()
            if batch:
                self._last_batch_requests = len(batch)
                rows = self._rows_of(batch)
                try:
                    started = time.perf_counter()
                    assert self._inline is not None
                    result = self._inline(rows)
                    self._timed(started)
                except BaseException as exc:  # the model raised: every caller gets it
                    self._fail(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    self._deliver(batch, result)
                self._last_batch_end = loop.time()
        finally:
            if self._queue:
                loop.call_soon(self._dispatch, loop)
            else:
                self._running = False

    # -- a model that answers through a callback (a sandbox): sent and delivered by callbacks -

    def _dispatch_then(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queue:
            self._running = False
        elif self._should_wait(loop):
            self._timer = loop.call_later(self._delay, self._send_then_batch, loop)
        else:
            self._send_then_batch(loop)

    def _send_then_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the next batch and send it; its answer comes to ``_then_done``."""
        self._timer = None
        batch = self._take()
        if not batch:  # every queued caller had given up
            self._after_then_batch(loop)
            return
        self._last_batch_requests = len(batch)
        rows = self._rows_of(batch)
        started = time.perf_counter()
        assert self._then is not None
        try:
            self._then(rows, lambda outcome: self._then_done(loop, batch, started, outcome))
        except Exception as exc:  # refused before sending: every caller gets it
            self._then_done(loop, batch, started, exc)

    def _then_done(
        self, loop: asyncio.AbstractEventLoop, batch: list[Item], started: float, outcome: Outcome
    ) -> None:
        self._timed(started)
        if isinstance(outcome, BaseException):
            self._fail(batch, outcome)
        else:
            self._deliver(batch, outcome)
        self._last_batch_end = loop.time()
        self._after_then_batch(loop)

    def _after_then_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queue:  # what queued meanwhile goes next (after one turn, as inline)
            loop.call_soon(self._dispatch_then, loop)
        else:
            self._running = False

    # -- a model in the model thread (or a sandbox): one task while requests keep coming -----

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            while self._queue:
                if self._runs_inline():  # cheap again: callbacks from here on
                    loop.call_soon(self._dispatch, loop)
                    handed_over = True
                    return
                if self._should_wait(loop):
                    await self._wait_for_more(loop)
                batch = self._take()
                if not batch:
                    continue  # every queued caller had given up
                self._last_batch_requests = len(batch)
                await self._run(batch)
                self._last_batch_end = loop.time()
        finally:
            self._task = None
            if not handed_over:
                self._running = False

    async def _wait_for_more(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the batch is full (see ``_batch_is_full``) or ``max_batch_delay_ms`` passed."""
        filled: asyncio.Future[None] = loop.create_future()
        self._filled = filled
        timer = loop.call_later(self._delay, _resolve, filled)
        try:
            await filled
        finally:
            timer.cancel()
            self._filled = None

    def _take(self) -> list[Item]:
        """The next batch, in order, skipping (and failing) callers that stopped waiting."""
        taken = 0
        rows = 0
        batch: list[Item] = []
        now = time.monotonic()
        for item in self._queue:
            item_rows, fut, deadline = item
            n = item_rows.shape[0]
            if fut.done() or (deadline is not None and deadline <= now):
                taken += 1
                self._queued_rows -= n
                self.expired += 1
                if not fut.done():
                    fut.set_exception(
                        DeadlineExceeded("the request's deadline passed before the model ran it")
                    )
                continue
            if batch and rows + n > self._max_rows:
                break
            taken += 1
            rows += n
            batch.append(item)
        del self._queue[:taken]
        self._queued_rows -= rows
        return batch

    def _rows_of(self, batch: list[Item]) -> FloatArray:
        rows = batch[0][0] if len(batch) == 1 else np.concatenate([r for r, _, _ in batch])
        self.calls += 1
        self.rows += rows.shape[0]
        self.on_batch(rows.shape[0])
        return rows

    def _timed(self, started: float) -> None:
        self._record(time.perf_counter() - started)

    def _record(self, seconds: float) -> None:
        self._call_seconds = 0.8 * self._call_seconds + 0.2 * seconds

    async def _run(self, batch: list[Item]) -> None:
        rows = self._rows_of(batch)
        try:
            if self._executor is not None and self._inline is not None:
                result, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _timed_call, self._inline, rows
                )
                self._record(seconds)
            else:
                assert self._predict is not None  # checked in __init__
                started = time.perf_counter()
                result = await self._predict(rows)
                self._timed(started)
        except BaseException as exc:  # the model raised: every caller in the batch gets it
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._deliver(batch, result)

    @staticmethod
    def _fail(batch: list[Item], exc: BaseException) -> None:
        for _, fut, _ in batch:
            if not fut.done():
                fut.set_exception(exc)

    @staticmethod
    def _deliver(batch: list[Item], result: Prediction) -> None:
        if len(batch) == 1:
            if not batch[0][1].done():
                batch[0][1].set_result(result)
            return
        start = 0
        for item_rows, fut, _ in batch:
            stop = start + item_rows.shape[0]
            if not fut.done():  # a cancelled caller (deadline passed) is simply skipped
                fut.set_result(result.slice(start, stop))
            start = stop
