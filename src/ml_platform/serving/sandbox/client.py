"""Front-worker side of a tenant sandbox: forwards one batched call per request batch."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from ml_platform.core.errors import PlatformError, Unavailable
from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction
from ml_platform.serving.sandbox import wire

logger = logging.getLogger(__name__)


class SandboxModelError(Exception):
    """The tenant's model raised inside its sandbox; the text is the sandbox's summary."""


Answer = tuple[int, int, int, bytes]
"""A sandbox's answer: status, n (rows, or the pid for OP_STATUS), k (probability columns, or
for OP_STATUS the byte width of the float the model computes in), and the body, a private copy
(never a view of memory the sandbox can still write)."""

OnAnswer = Callable[[Answer | BaseException], None]
"""Called once per request, on the event loop: with the answer, or with the error that
ended the connection before it came."""


def _settle(fut: asyncio.Future[Answer], outcome: Answer | BaseException) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


class _Protocol(asyncio.Protocol):
    """Parses response frames as they arrive and hands each to its request's callback right
    there: no reader task in between. Every size comes from the sandbox, so every one is
    checked."""

    def __init__(self, pending: dict[int, OnAnswer], path: str) -> None:
        self._pending = pending
        self._path = path
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if not self._buf:  # the usual case: whole frames in one read, parsed from ``data``
            used = self._frames(data)
            if used < len(data):
                self._buf += memoryview(data)[used:]
            return
        self._buf += data
        used = self._frames(self._buf)
        del self._buf[:used]

    def _frames(self, data: bytes | bytearray) -> int:
        """Resolve every complete frame in ``data``; the bytes consumed."""
        head = wire.RESPONSE.size
        at = 0
        while len(data) - at >= head:
            body_len, rid, status, n, k = wire.RESPONSE.unpack_from(data, at)
            if body_len > wire.MAX_FRAME_BYTES:
                logger.warning("sandbox %s sent an oversized frame; disconnecting", self._path)
                if self.transport is not None:
                    self.transport.close()
                return len(data)
            end = at + head + body_len
            if len(data) < end:
                break
            on_answer = self._pending.pop(rid, None)
            at = end
            if on_answer is not None:
                try:
                    on_answer((status, n, k, bytes(data[at - body_len : at])))
                except Exception:  # a bug in a callback must not cost the other answers
                    logger.exception("sandbox answer callback failed")
        return at

    def connection_lost(self, exc: Exception | None) -> None:
        logger.info("sandbox connection %s closed: %s", self._path, exc or "EOF")
        self.transport = None
        self._buf.clear()
        err = Unavailable("the model's sandbox process went away; retry shortly")
        pending = list(self._pending.values())
        self._pending.clear()
        for on_answer in pending:
            try:
                on_answer(err)
            except Exception:
                logger.exception("sandbox answer callback failed")


class SandboxConnection:
    """One multiplexed connection to one sandbox socket, reconnected on demand.

    Requests go out as a header plus the rows' own memory (``writelines``: no join), answers
    are parsed in ``data_received`` (see ``_Protocol``), so a round trip costs two socket
    writes, two reads and the loop's wake-ups on each side. ``send`` hands the answer to a
    callback (no future, no task); ``call`` awaits it.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._ids = itertools.count(1)
        self._protocol: _Protocol | None = None
        self._connect_lock = asyncio.Lock()

    def live(self) -> bool:
        """Whether a request can be sent now, without connecting first."""
        return self._live() is not None

    def _live(self) -> _Protocol | None:
        p = self._protocol
        if p is not None and p.transport is not None and not p.transport.is_closing():
            return p
        return None

    async def _ensure(self) -> _Protocol:
        p = self._live()
        if p is not None:
            return p
        async with self._connect_lock:
            p = self._live()
            if p is not None:
                return p
            pending: dict[int, OnAnswer] = {}
            try:
                transport, p = await asyncio.get_running_loop().create_unix_connection(
                    lambda: _Protocol(pending, self._path), self._path
                )
            except OSError as exc:
                raise Unavailable(
                    "the model's sandbox process is not reachable; retry shortly"
                ) from exc
            p.transport = transport  # uvloop calls connection_made later
            self._protocol = p
            return p

    async def call(
        self, op: int, key: bytes, rows: int, cols: int, payload: FloatArray | None = None
    ) -> Answer:
        """One request; ``payload`` (C-contiguous float64, ``rows`` x ``cols``) is sent from
        its own memory and must not change until the answer arrives."""
        p = self._live() or await self._ensure()
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._send(p, op, key, rows, cols, payload, lambda outcome: _settle(fut, outcome))
        return await fut

    def send(
        self, op: int, key: bytes, rows: int, cols: int, payload: FloatArray, then: OnAnswer
    ) -> None:
        """As ``call``, on a live connection (see ``live``), the answer going to ``then``."""
        p = self._live()
        if p is None:
            raise Unavailable("the model's sandbox process is not connected; retry shortly")
        self._send(p, op, key, rows, cols, payload, then)

    def _send(
        self,
        p: _Protocol,
        op: int,
        key: bytes,
        rows: int,
        cols: int,
        payload: FloatArray | None,
        then: OnAnswer,
    ) -> None:
        transport = p.transport
        assert transport is not None
        rid = next(self._ids) & 0xFFFFFFFF
        p._pending[rid] = then
        if payload is None:
            transport.write(wire.request_head(rid, op, key, rows, cols, 0))
        else:
            transport.writelines(
                (
                    wire.request_head(rid, op, key, rows, cols, payload.nbytes),
                    payload.data.cast("B"),
                )
            )

    async def close(self) -> None:
        p = self._protocol
        if p is not None and p.transport is not None:
            p.transport.close()
        self._protocol = None


class RemoteModel:
    """A model loaded in a tenant sandbox, seen from a front worker."""

    def __init__(self, conn: SandboxConnection, key: str, n_features: int) -> None:
        self._conn = conn
        self._key = key
        self._key_bytes = key.encode()
        self._cols = n_features
        self.labels: tuple[str, ...] = ()
        self.pid = 0
        self.value_dtype: np.dtype[Any] = np.dtype(np.float64)  # the model's, once ready
        self._connecting: set[asyncio.Task[Prediction]] = set()  # predict_then's, kept alive

    async def wait_ready(self, limit_seconds: float) -> None:
        """Wait until the sandbox reports the model loaded (it loads on the supervisor's order)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_seconds
        delay = 0.02
        while True:
            try:
                status, n_pid, width, body = await self._conn.call(
                    wire.OP_STATUS, self._key_bytes, 0, 0
                )
            except PlatformError:
                status, n_pid, width, body = wire.ST_NOT_READY, 0, 0, b""
            if status == wire.ST_OK:
                text = body.decode(errors="replace")
                self.labels = tuple(text.split(wire.LABEL_SEP)) if text else ()
                self.pid = n_pid
                # the sandbox's word, so only one of two widths is believed
                self.value_dtype = np.dtype(np.float32 if width == 4 else np.float64)
                return
            if status == wire.ST_FAILED:
                raise ModelLoadError(body.decode(errors="replace"))
            if loop.time() >= deadline:
                raise ModelLoadError(f"sandbox did not load the model within {limit_seconds:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def export(self) -> bytes:
        """The model as skops bytes written by its sandbox: untrusted, for ``load_skops`` only.

        Raises SandboxModelError with the sandbox's reason when it has no export.
        """
        status, _, _, body = await self._conn.call(wire.OP_EXPORT, self._key_bytes, 0, 0)
        if status == wire.ST_OK:
            return body
        if status == wire.ST_MODEL_ERROR:
            raise SandboxModelError(body.decode(errors="replace"))
        raise Unavailable("the model is not loaded in its sandbox yet; retry shortly")

    async def predict(self, rows: FloatArray) -> Prediction:
        data = self._request_rows(rows)
        n = data.shape[0]
        answer = await self._conn.call(wire.OP_PREDICT, self._key_bytes, n, self._cols, data)
        return self._prediction(n, answer)

    def predict_then(
        self, rows: FloatArray, then: Callable[[Prediction | BaseException], None]
    ) -> None:
        """``predict`` with the outcome handed to ``then`` (the batcher's callback path): on
        a live connection, no task and no future; otherwise connects first, in a task."""
        data = self._request_rows(rows)
        if not self._conn.live():
            task = asyncio.get_running_loop().create_task(self.predict(data))
            self._connecting.add(task)
            task.add_done_callback(lambda t: self._connected(t, then))
            return
        n = data.shape[0]

        def answered(answer: Answer | BaseException) -> None:
            if isinstance(answer, BaseException):
                then(answer)
                return
            try:
                prediction = self._prediction(n, answer)
            except Exception as exc:
                then(exc)
            else:
                then(prediction)

        self._conn.send(wire.OP_PREDICT, self._key_bytes, n, self._cols, data, answered)

    def _connected(
        self, task: asyncio.Task[Prediction], then: Callable[[Prediction | BaseException], None]
    ) -> None:
        self._connecting.discard(task)
        if task.cancelled():
            then(Unavailable("the call to the model's sandbox was cancelled; retry shortly"))
            return
        exc = task.exception()
        then(exc if exc is not None else task.result())

    def _request_rows(self, rows: FloatArray) -> FloatArray:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self._cols:
            raise SandboxModelError(
                f"expected rows of {self._cols} features, got shape {data.shape}"
            )
        return data

    def _prediction(self, n: int, answer: Answer) -> Prediction:
        status, rn, k, body = answer
        if status == wire.ST_MODEL_ERROR:
            raise SandboxModelError(body.decode(errors="replace"))
        if status != wire.ST_OK:
            raise Unavailable("the model is not loaded in its sandbox yet; retry shortly")
        if rn != n or len(body) != 8 * n * (1 + k) or (k and k != len(self.labels)):
            raise SandboxModelError("malformed answer from the model's sandbox")
        values = np.frombuffer(body, dtype=np.float64)  # read-only: ``body`` is our copy
        probs = values[n:].reshape(n, k) if k else None
        return Prediction(values[:n], probs, self.labels if k else ())
