"""Per-tenant API usage, counted in memory and added to the store every few seconds.

``UsageRecorder.count`` is what a request costs: one dict increment under a lock, no I/O. The
counts are swapped out and folded into ``store.usage`` (one atomic upsert per key) every
``interval`` seconds by a background task, and once more when the recorder stops (the
application's shutdown), so nothing counted is lost on a clean stop. A flush that fails keeps
its counts for the next one (logged). Several replicas each flush their own increments; the
upserts add up, so no shared counter (Redis) is needed for exact totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime

from ml_platform.store.usage import UsageKey, UsageStore

logger = logging.getLogger(__name__)


class UsageRecorder:
    def __init__(self, store: UsageStore, interval: float = 5.0) -> None:
        self._store = store
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[UsageKey, int] = {}
        self._task: asyncio.Task[None] | None = None

    def count(self, tenant_id: str, api_version: str, method: str, route: str) -> None:
        key = UsageKey(datetime.now(UTC).date(), tenant_id, api_version, method, route)
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1

    def pending(self) -> int:
        """Requests counted but not yet in the store."""
        with self._lock:
            return sum(self._pending.values())

    def flush(self) -> int:
        """Add what was counted to the store (blocking); how many requests it added."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            self._store.add(batch)
        except Exception:
            with self._lock:  # keep them for the next flush
                for key, value in batch.items():
                    self._pending[key] = self._pending.get(key, 0) + value
            raise
        return sum(batch.values())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.flush)
            except Exception:
                logger.warning("api usage: flush failed; the counts are kept", exc_info=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def stop(self) -> None:
        """Stop the periodic flush and flush what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.to_thread(self.flush)
        except Exception:
            logger.exception(
                "api usage: the final flush failed; %d requests uncounted", self.pending()
            )
