"""What the scheduler reads of the pending queue (issue 15), on SQLite and PostgreSQL: every
pending row once, on taking the lease; then only the new jobs, in one snapshot with the
count, so submits committing meanwhile never force more; a cancel or a re-queued retry is
found by comparing ids, and only the jobs the queue lacks are read."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.core.ids import new_id
from ml_platform.core.jobs import JobStatus
from ml_platform.jobs import scheduler as scheduler_module
from ml_platform.jobs.scheduler import Capacity, Scheduler
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRepository
from ml_platform.store.jobs import JobRepository, transition_job

SPEC = {"name": "j", "framework": "sklearn", "data_path": "d", "output_path": "o"}


class Store:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self.db, self.tenant_id = db, tenant_id

    def submit(self) -> str:
        with self.db.transaction() as session:
            return JobRepository(session, self.tenant_id).add(
                job_id=new_id("job"), name="j", framework="sklearn", spec=SPEC, env_vars={},
                tags={}, created_by="test",
            ).id  # fmt: skip

    def move(self, job_id: str, target: JobStatus, **fields: Any) -> None:
        with self.db.transaction() as session:
            transition_job(session, job_id, tenant_id=self.tenant_id, target=target, **fields)

    def pending_ids(self) -> set[str]:
        with self.db.read() as session:
            return JobRuntimeRepository(session).pending_ids()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, database_url_factory: Any) -> Iterator[Store]:
    db = Database(database_url_factory(request.param))
    db.upgrade()
    tenant = AuthService(db, TokenCodec("unused")).create_tenant("queue")
    yield Store(db, tenant.id)
    db.dispose()


class Reads:
    """A scheduler (its queue reads only) that counts its full reads and id comparisons."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(scheduler_module, "RECHECK_SECONDS", 1e9)  # no timed safety net
        unused: Any = None
        self.scheduler = Scheduler(
            db=db, executor=unused, logs=unused, packages=unused, paths=unused,
            capacity=Capacity(4, 8, 0), tenant_max_concurrent_jobs=1,
        )  # fmt: skip
        self.full_reads = self._count("_read_all_pending")
        self.id_reads = self._count("_pending_ids")
        self.rows_read: list[set[str]] = []
        lookup = self.scheduler._pending_jobs

        def pending_jobs(job_ids: set[str]) -> Any:
            self.rows_read.append(set(job_ids))
            return lookup(job_ids)

        self.scheduler._pending_jobs = pending_jobs  # type: ignore[method-assign]

    def _count(self, name: str) -> list[int]:
        calls = [0]
        method: Callable[..., Any] = getattr(self.scheduler, name)

        def counted(*args: Any) -> Any:
            calls[0] += 1
            return method(*args)

        setattr(self.scheduler, name, counted)
        return calls

    def refresh(self) -> None:
        asyncio.run(self.scheduler._refresh_queue())

    @property
    def queued(self) -> set[str]:
        return set(self.scheduler._queue.items)


def test_submits_committing_during_ticks_never_force_a_full_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(50):
        store.submit()
    reads = Reads(store.db, monkeypatch)
    reads.refresh()
    assert reads.full_reads == [1] and len(reads.queued) == 50

    done = threading.Event()

    def submitter() -> None:
        try:
            for _ in range(200):
                store.submit()
        finally:
            done.set()

    async def tick_until_done() -> int:
        ticks = 0
        while not done.is_set():
            await reads.scheduler._refresh_queue()
            ticks += 1
        await reads.scheduler._refresh_queue()
        return ticks

    thread = threading.Thread(target=submitter)
    thread.start()
    ticks = asyncio.run(tick_until_done())
    thread.join()

    assert ticks > 1  # the ticks ran while the submits committed
    assert reads.queued == store.pending_ids() and len(reads.queued) == 250
    assert reads.full_reads == [1]  # every pending row was read once only
    assert reads.id_reads == [0]  # the count always matched the new rows it came with


def test_a_cancel_and_a_requeued_retry_are_found_by_ids_reading_only_the_retry(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [store.submit() for _ in range(20)]
    reads = Reads(store.db, monkeypatch)
    reads.refresh()

    store.move(ids[3], JobStatus.CANCELLED)  # cancelled while queued: the count drops
    reads.refresh()
    assert ids[3] not in reads.queued and len(reads.queued) == 19
    assert (reads.full_reads, reads.id_reads, reads.rows_read) == ([1], [1], [])

    # a job starts (leaves the queue), fails and is re-queued with a backoff: the count is
    # what the queue holds again, so only the scheduler's flag says to compare
    reads.scheduler._queue.remove(ids[5])
    store.move(ids[5], JobStatus.RUNNING, attempt=1)
    store.move(ids[5], JobStatus.PENDING, attempt=1)
    not_before = utcnow() + timedelta(minutes=5)
    with store.db.transaction() as session:
        JobRuntimeRepository(session).upsert_runtime(
            ids[5], store.tenant_id, attempt=1, not_before=not_before
        )
    reads.scheduler._queue.recheck = True
    reads.refresh()
    assert reads.full_reads == [1] and reads.id_reads == [2]
    assert reads.rows_read == [{ids[5]}]  # the one job the queue lacked
    retry = reads.scheduler._queue.delayed[ids[5]]  # waits its backoff, not in the FIFO
    assert retry.runtime is not None and retry.runtime.not_before == not_before
    assert reads.queued == store.pending_ids()

    reads.refresh()  # nothing changed: neither ids nor rows read again
    assert (reads.full_reads, reads.id_reads, len(reads.rows_read)) == ([1], [2], 1)
