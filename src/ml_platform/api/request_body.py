"""Request bodies streamed into a writer in pieces, refused as soon as they pass a limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from fastapi.concurrency import run_in_threadpool

FLUSH_BYTES = 1024 * 1024  # body chunks are written in pieces of about this size


class BodySink(Protocol):
    """Where a body goes: a data-area upload, a code-package upload."""

    @property
    def size(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def too_large(self) -> Exception: ...


async def stream_into(chunks: AsyncIterator[bytes], sink: BodySink, limit: int) -> None:
    """Write ``chunks`` into ``sink`` (off the event loop, about FLUSH_BYTES at a time),
    raising ``sink.too_large()`` the moment more than ``limit`` bytes arrived, before the
    rest of the body is read. The caller aborts the sink on any error."""
    pending = bytearray()
    async for chunk in chunks:
        if sink.size + len(pending) + len(chunk) > limit:
            raise sink.too_large()
        pending += chunk
        if len(pending) >= FLUSH_BYTES:
            await run_in_threadpool(sink.write, bytes(pending))
            pending.clear()
    if pending:
        await run_in_threadpool(sink.write, bytes(pending))
