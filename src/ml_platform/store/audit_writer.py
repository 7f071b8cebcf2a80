"""One writer thread for audit events, with group commit.

``await writer.write(event)`` returns once the event is committed, so an audited response
still goes out only after its event is durable (a crash loses no event of an answered
request). Events that arrive while a transaction is running wait for the next one and are
written together in it: one commit for many concurrent requests. The thread is started on
demand and ends after ``idle_seconds`` without events.
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


class AuditWriter:
    def __init__(self, store: AuditStore, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[tuple[AuditEvent, Future[None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def write(self, event: AuditEvent) -> None:
        """Committed when this returns; the store's error is raised here."""
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
            self._commit(batch)

    def _commit(self, batch: list[tuple[AuditEvent, Future[None]]]) -> None:
        try:
            self.store.record_many([event for event, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one bad event must not fail its neighbours: one by one
                for item in batch:
                    self._commit([item])
                return
            batch[0][1].set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)
