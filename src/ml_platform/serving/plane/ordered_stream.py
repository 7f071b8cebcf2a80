"""Run stream messages concurrently (so they batch) while answering in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")

WINDOW = 256


async def ordered_map(
    requests: AsyncIterator[Req], handle: Callable[[Req], Awaitable[Resp]], window: int = WINDOW
) -> AsyncIterator[Resp]:
    """Yield ``handle(r)`` for each request in order, with up to ``window`` in flight."""
    queue: asyncio.Queue[asyncio.Task[Resp] | None] = asyncio.Queue(maxsize=window)
    loop = asyncio.get_running_loop()

    async def reader() -> None:
        try:
            async for req in requests:
                await queue.put(loop.create_task(handle(req)))  # type: ignore[arg-type]
        finally:
            await queue.put(None)

    feeder = loop.create_task(reader())
    try:
        while True:
            task = await queue.get()
            if task is None:
                break
            yield await task
        await feeder  # surfaces a failure of the request stream itself
    finally:
        feeder.cancel()
        while not queue.empty():
            pending = queue.get_nowait()
            if pending is not None:
                pending.cancel()
        with contextlib.suppress(BaseException):
            await feeder
