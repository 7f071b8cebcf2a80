"""The audit writer thread on a real SQLite store: each ``write`` returns only once its event
is committed, concurrent writes are all committed exactly once, and a failing batch falls back
to one event at a time so only the bad event fails; with buffered delivery ``write`` returns
before the commit and ``drain`` waits for it."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from ml_platform.store.audit import AuditEvent, AuditStore
from ml_platform.store.audit_writer import AuditWriter
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database


def event(request_id: str, method: str | None = "DELETE") -> AuditEvent:
    return AuditEvent(
        utcnow(),
        "ten_w",
        "writer",
        None,
        "jobs.cancel",
        "job_x",
        method,  # type: ignore[arg-type]
        None,
        204,
        request_id,
        "127.0.0.1",
    )


def test_concurrent_writes_are_each_committed_once_before_they_return(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mlp.db'}")
    db.upgrade()
    store = AuditStore(db)
    writer = AuditWriter(store)

    async def run() -> None:
        async def one(index: int) -> None:
            await writer.write(event(f"req_{index}"))
            # committed when write returns: a fresh read sees it
            assert any(e.request_id == f"req_{index}" for e in store.events(limit=1000))

        await asyncio.gather(*(one(i) for i in range(60)))
        bad = writer.write(event("req_bad", method=None))  # NOT NULL: the batch fails
        good = writer.write(event("req_good"))
        results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], Exception) and results[1] is None

    asyncio.run(run())
    ids = sorted(e.request_id or "" for e in store.events(limit=1000))
    assert ids == sorted([f"req_{i}" for i in range(60)] + ["req_good"])
    db.dispose()


class HeldStore(AuditStore):
    """The real SQLite store, whose commits wait until the test lets them through."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.gate = threading.Event()

    def record_many(self, events: list[AuditEvent]) -> None:
        assert self.gate.wait(timeout=30)
        super().record_many(events)


def test_buffered_writes_return_before_the_commit_and_drain_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mlp.db'}")
    db.upgrade()
    store = HeldStore(db)
    writer = AuditWriter(store, wait_for_commit=False)

    async def run() -> None:
        # every write returns although no commit can happen yet
        for index in range(20):
            await asyncio.wait_for(writer.write(event(f"req_{index}")), timeout=5)
        await writer.write(event("req_bad", method=None))  # NOT NULL: fails alone, logged
        await writer.write(event("req_last"))
        assert store.events(limit=1000) == []
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not drained.done()  # the commits are still held
        store.gate.set()
        await asyncio.wait_for(drained, timeout=30)

    with caplog.at_level(logging.ERROR, logger="ml_platform.store.audit_writer"):
        asyncio.run(run())
    ids = sorted(e.request_id or "" for e in store.events(limit=1000))
    assert ids == sorted([f"req_{i}" for i in range(20)] + ["req_last"])
    assert any("req_bad" in record.getMessage() for record in caplog.records)
    db.dispose()
