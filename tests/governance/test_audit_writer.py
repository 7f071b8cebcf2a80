"""The audit writer thread on a real SQLite store: each ``write`` returns only once its event
is committed, concurrent writes are all committed exactly once, and a failing batch falls back
to one event at a time so only the bad event fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
