"""One scheduler across replicas: the lease row, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRepository


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
