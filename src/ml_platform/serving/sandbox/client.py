"""Front-worker side of a tenant sandbox: forwards one batched call per request batch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import numpy as np

from ml_platform.core.errors import PlatformError, Unavailable
from ml_platform.serving.runtimes.base import FloatArray, ModelLoadError, Prediction
from ml_platform.serving.sandbox import wire

logger = logging.getLogger(__name__)


class SandboxModelError(Exception):
    """The tenant's model raised inside its sandbox; the text is the sandbox's summary."""


class SandboxConnection:
    """One multiplexed connection to one sandbox socket, reconnected on demand."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[int, int, int, bytes]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()

    async def _ensure(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        async with self._connect_lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self._path, limit=wire.MAX_FRAME_BYTES
                )
            except OSError as exc:
                raise Unavailable(
                    "the model's sandbox process is not reachable; retry shortly"
                ) from exc
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read_loop(reader))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(wire.RESPONSE.size)
                body_len, rid, status, n, k = wire.RESPONSE.unpack(head)
                if body_len > wire.MAX_FRAME_BYTES:
                    raise ValueError("oversized frame from sandbox")
                body = await reader.readexactly(body_len)
                fut = self._pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result((status, n, k, body))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            logger.info("sandbox connection %s closed: %s", self._path, exc)
        finally:
            err = Unavailable("the model's sandbox process went away; retry shortly")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()
            if self._writer is not None:
                self._writer.close()
            self._writer = None

    async def call(
        self, op: int, key: str, rows: int, cols: int, payload: bytes
    ) -> tuple[int, int, int, bytes]:
        writer = await self._ensure()
        rid = next(self._ids) & 0xFFFFFFFF
        fut: asyncio.Future[tuple[int, int, int, bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[rid] = fut
        writer.write(wire.encode_request(rid, op, key, rows, cols, payload))
        return await fut

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


class RemoteModel:
    """A model loaded in a tenant sandbox, seen from a front worker."""

    def __init__(self, conn: SandboxConnection, key: str, n_features: int) -> None:
        self._conn = conn
        self._key = key
        self._cols = n_features
        self.labels: tuple[str, ...] = ()
        self.pid = 0

    async def wait_ready(self, limit_seconds: float) -> None:
        """Wait until the sandbox reports the model loaded (it loads on the supervisor's order)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_seconds
        delay = 0.02
        while True:
            try:
                status, n_pid, _, body = await self._conn.call(wire.OP_STATUS, self._key, 0, 0, b"")
            except PlatformError:
                status, n_pid, body = wire.ST_NOT_READY, 0, b""
            if status == wire.ST_OK:
                text = body.decode(errors="replace")
                self.labels = tuple(text.split(wire.LABEL_SEP)) if text else ()
                self.pid = n_pid
                return
            if status == wire.ST_FAILED:
                raise ModelLoadError(body.decode(errors="replace"))
            if loop.time() >= deadline:
                raise ModelLoadError(f"sandbox did not load the model within {limit_seconds:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def predict(self, rows: FloatArray) -> Prediction:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        n = data.shape[0]
        status, rn, k, body = await self._conn.call(
            wire.OP_PREDICT, self._key, n, self._cols, data.tobytes()
        )
        if status == wire.ST_MODEL_ERROR:
            raise SandboxModelError(body.decode(errors="replace"))
        if status != wire.ST_OK:
            raise Unavailable("the model is not loaded in its sandbox yet; retry shortly")
        if rn != n or len(body) != 8 * n * (1 + k) or (k and k != len(self.labels)):
            raise SandboxModelError("malformed answer from the model's sandbox")
        values = np.frombuffer(body, dtype=np.float64, count=n)
        probs = np.frombuffer(body, dtype=np.float64, offset=8 * n).reshape(n, k) if k else None
        return Prediction(values, probs, self.labels if k else ())
