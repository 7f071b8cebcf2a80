"""One scheduler across replicas: the lease row, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_platform.jobs.scheduler import LEASE_NAME
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRepository
from tests.conftest import Platform, Tenant, start_platform
from tests.jobs.conftest import JOB_SETTINGS, submit, tenant_root, upload, zip_files


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_only_one_holder_until_the_lease_expires(backend: str, database_url_factory: Any) -> None:
    db = Database(database_url_factory(backend))
    db.upgrade()
    try:

        def acquire(holder: str, ttl: float) -> bool:
            with db.transaction() as session:
                return JobRuntimeRepository(session).acquire_lease("sched", holder, ttl)

        assert acquire("replica-a", 0.3)
        assert not acquire("replica-b", 0.3)
        assert acquire("replica-a", 0.3)  # renewal
        time.sleep(0.4)  # replica-a stopped renewing: its lease runs out
        assert acquire("replica-b", 30)
        assert not acquire("replica-a", 30)
        with db.transaction() as session:
            JobRuntimeRepository(session).release_lease("sched", "replica-b")
        assert acquire("replica-a", 30)
    finally:
        db.dispose()


def _submit_training_job(platform: Platform, tenant: Tenant) -> tuple[httpx.Client, str]:
    """Upload a one-line training script and its data for ``tenant``; submit it."""
    client = platform.client(tenant)
    package = upload(client, zip_files({"train.py": "print('trained')\n"}))
    data = tenant_root(platform, tenant) / "data"
    data.mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    return client, str(submit(client, source=package)["id"])


class _SlowToStart:
    """The platform's own executor behind a start that takes three leases (a Ray head that
    keeps answering "try again later"); everything else is the real executor's."""

    def __init__(self, executor: Any, delay: float) -> None:
        self._executor = executor
        self._delay = delay
        self.name = executor.name

    async def start(self, launch: Any) -> dict[str, Any]:
        await asyncio.sleep(self._delay)
        handle: dict[str, Any] = await self._executor.start(launch)
        return handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


def test_a_start_longer_than_the_lease_keeps_the_lease(
    tmp_path: Path, database_url_factory: Any
) -> None:
    """The lease is renewed apart from the tick: while one start takes three lease lengths, a
    second replica never gets the lease (it would fail the starting job), and the job runs."""
    lease = 0.6
    platform, server = start_platform(
        "sqlite", tmp_path / "data", database_url_factory("sqlite"),
        **{**JOB_SETTINGS, "scheduler_lease_seconds": lease},
    )  # fmt: skip
    try:
        assert platform.context.engine is not None
        scheduler = platform.context.engine.scheduler
        assert scheduler is not None
        scheduler._executor = _SlowToStart(scheduler._executor, delay=3 * lease)
        client, job_id = _submit_training_job(platform, platform.new_tenant("lease"))

        taken_by_b = []
        deadline = time.monotonic() + 3 * lease + 30  # safety net against a hang only
        while client.get(f"/v1/jobs/training/{job_id}").json()["status"] != "succeeded":
            with platform.db.transaction() as session:
                taken_by_b.append(
                    JobRuntimeRepository(session).acquire_lease(LEASE_NAME, "replica-b", 30)
                )
            assert time.monotonic() < deadline, (
                f"the job did not finish; replica-b took the lease {sum(taken_by_b)} times"
            )
            # a real replica asks once per scheduler tick (0.5 s by default); asking back to
            # back held SQLite's one write lock so often that a loaded host's renewal missed
            time.sleep(0.05)
            time.sleep(lease / 4)
        assert len(taken_by_b) >= 8  # the contender tried all through the slow start
        assert not any(taken_by_b)
        logs = client.get(f"/v1/jobs/training/{job_id}/logs").text
        assert "trained" in logs
    finally:
        platform.close()
        server.stop()
        platform.db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_holder_whose_lease_was_taken_starts_nothing(
    backend: str, tmp_path: Path, database_url_factory: Any
) -> None:
    """Fencing (issue 12): the start is conditional on the lease in its own transaction. A
    scheduler that still believes it leads, after another holder took the lease, leaves a
    pending job pending; once it holds the lease again, the same tick starts it."""
    platform, server = start_platform(
        backend, tmp_path / "data", database_url_factory(backend),
        **{**JOB_SETTINGS, "scheduler_lease_seconds": 30},
    )  # fmt: skip
    try:
        assert platform.context.engine is not None
        scheduler = platform.context.engine.scheduler
        assert scheduler is not None and scheduler._loop is not None
        loop = scheduler._loop

        def on_loop(coroutine: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

        deadline = time.monotonic() + 30  # safety net against a hang only
        while not scheduler.is_leader:
            assert time.monotonic() < deadline, "the scheduler never took the lease"
            time.sleep(0.05)
        on_loop(scheduler.stop(stop_jobs=False))  # no more ticks or renewals of its own
        scheduler._leader = True  # ... but it still believes it leads
        with platform.db.transaction() as session:
            assert JobRuntimeRepository(session).acquire_lease(LEASE_NAME, "replica-b", 30)

        client, job_id = _submit_training_job(platform, platform.new_tenant("fenced"))

        on_loop(scheduler.tick())
        job = client.get(f"/v1/jobs/training/{job_id}").json()
        assert job["status"] == "pending"
        assert [t["status"] for t in job["status_history"]] == ["pending"]
        assert not scheduler.is_leader  # it noticed, and stops trying

        with platform.db.transaction() as session:
            JobRuntimeRepository(session).release_lease(LEASE_NAME, "replica-b")
        on_loop(scheduler._renew())
        on_loop(scheduler.tick())
        job = client.get(f"/v1/jobs/training/{job_id}").json()
        assert job["status"] in ("running", "succeeded"), job
        on_loop(scheduler.stop())
    finally:
        platform.close()
        server.stop()
        platform.db.dispose()
