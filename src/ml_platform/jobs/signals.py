"""In-process wake-ups: "job X changed" (status or metrics), safe to fire from any thread.

Each job has a version counter; a listener remembers the version it has seen and waits for a
newer one, so no change is missed between two waits. Listeners re-read what they need after a
wake-up: a burst of changes costs one read and memory never grows with the number of changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict

_MAX_TRACKED = 10_000


class JobSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def version(self, job_id: str) -> int:
        with self._lock:
            return self._versions.get(job_id, 0)

    def fire(self, job_id: str) -> None:
        with self._lock:
            self._versions[job_id] = self._versions.get(job_id, 0) + 1
            self._versions.move_to_end(job_id)
            while len(self._versions) > _MAX_TRACKED:
                self._versions.popitem(last=False)
            waiters = list(self._waiters.get(job_id, ()))
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the listener's loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, job_id: str, seen: int, timeout: float) -> int:  # noqa: ASYNC109
        """Wait until the job's version exceeds ``seen`` or ``timeout`` passes; return the
        current version."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        key = (loop, future)
        with self._lock:
            current = self._versions.get(job_id, 0)
            if current > seen:
                return current
            self._waiters.setdefault(job_id, set()).add(key)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(key)
                    if not waiters:
                        del self._waiters[job_id]
        return self.version(job_id)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
