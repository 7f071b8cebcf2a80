"""One writer thread for audit events, with group commit.

``await writer.write(event)`` hands an event over in one of two deliveries:

- ``committed`` (``wait_for_commit=True``, the default): it returns once the event is
  committed, so an audited response goes out only after its event is durable (a crash loses
  no event of an answered request); the store's error is raised there.
- ``buffered``: it returns at once and the thread commits the event a moment later (a
  ``kill -9`` can lose the events still queued, a few milliseconds' worth; a failure is
  logged). ``await writer.drain()`` waits until everything handed over so far is committed:
  shutdown and the audit readers of the same process call it.

Events that arrive while a transaction is running wait for the next one and are written
together in it: one commit for many concurrent requests. The thread is started on demand and
ends after ``idle_seconds`` without events.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from ml_platform.store.audit import AuditEvent, AuditStore

logger = logging.getLogger(__name__)

MAX_BATCH = 256
IDLE_SECONDS = 5.0

# (event, its future): a None event is a drain marker, done once everything before it is;
# a None future is a submitted event nobody waits for (its failure is logged).
_Item = tuple[AuditEvent | None, "Future[None] | None"]


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        *,
        wait_for_commit: bool = True,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.store = store
        self.wait_for_commit = wait_for_commit
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def write(self, event: AuditEvent) -> None:
        """Committed when this returns (``committed``), or queued for the next commit."""
        if self.wait_for_commit:
            await self._put(event)
        else:
            self._queue.put((event, None))
            self._ensure_thread()

    async def drain(self) -> None:
        """Returns once every event handed over before this call is committed (or has failed)."""
        await self._put(None)

    async def _put(self, event: AuditEvent | None) -> None:
        done: Future[None] = Future()
        self._queue.put((event, done))
        self._ensure_thread()
        await asyncio.wrap_future(done)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mlp-audit-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # a put after this sees no live thread: restarts it
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit([item for item in batch if item[0] is not None])
            for event, done in batch:
                if event is None and done is not None:  # a drain: all before it are done
                    done.set_result(None)

    def _commit(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            self.store.record_many([event for event, _ in batch if event is not None])
        except Exception as exc:
            if len(batch) > 1:  # one bad event must not fail its neighbours: one by one
                for item in batch:
                    self._commit([item])
                return
            event, done = batch[0]
            if done is not None:
                done.set_exception(exc)
            else:
                logger.error(
                    "could not write the audit event of request %s: %s",
                    event.request_id if event is not None else None,
                    exc,
                )
            return
        for _, done in batch:
            if done is not None:
                done.set_result(None)
