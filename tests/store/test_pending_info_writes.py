"""The scheduler's writes and the submit's count (issue 15), on SQLite and PostgreSQL: queue
positions are upserted in one statement per batch and touch nothing but the reason and the
position; the tenant's pending count for ``max_queued_jobs`` comes from ``job_counts`` and
equals the rows through every transition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.core.ids import new_id
from ml_platform.core.jobs import JobStatus
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRepository
from ml_platform.store.jobs import JobRepository, JobRow, transition_job
from ml_platform.store.quotas import QuotaRepository

SPEC = {"name": "j", "framework": "sklearn", "data_path": "d", "output_path": "o"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, database_url_factory: Any) -> Iterator[Database]:
    database = Database(database_url_factory(request.param))
    database.upgrade()
    yield database
    database.dispose()


def tenant(db: Database, name: str) -> str:
    return AuthService(db, TokenCodec("unused")).create_tenant(name).id


def submit(db: Database, tenant_id: str, framework: str = "sklearn") -> str:
    with db.transaction() as session:
        return JobRepository(session, tenant_id).add(
            job_id=new_id("job"), name="j", framework=framework, spec=SPEC, env_vars={},
            tags={}, created_by="test",
        ).id  # fmt: skip


class Statements:
    """Counts the SQL statements the engine sends while it is on."""

    def __init__(self, db: Database) -> None:
        self.sent: list[str] = []
        self._engine = db.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.sent.append(statement)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


def test_positions_are_upserted_in_one_statement_and_keep_the_attempt_state(db: Database) -> None:
    tenant_id = tenant(db, "writes")
    ids = [submit(db, tenant_id) for _ in range(30)]
    not_before = utcnow() + timedelta(minutes=1)
    with db.transaction() as session:  # a retry waiting its backoff: a runtime row exists
        JobRuntimeRepository(session).upsert_runtime(
            ids[0], tenant_id, attempt=2, executor="local", handle={"pid": 7},
            not_before=not_before,
        )  # fmt: skip

    info = {job_id: (tenant_id, f"queued: {n} jobs ahead", n) for n, job_id in enumerate(ids)}
    statements = Statements(db)
    try:
        with db.transaction() as session:
            JobRuntimeRepository(session).set_pending_info(info)
    finally:
        statements.close()
    writes = [s for s in statements.sent if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 1  # thirty positions, one statement

    with db.read() as session:
        runtime = JobRuntimeRepository(session).runtime_for(tenant_id, ids)
    assert {job_id: (r.pending_reason, r.queue_position) for job_id, r in runtime.items()} == {
        job_id: (reason, position) for job_id, (_, reason, position) in info.items()
    }
    kept = runtime[ids[0]]
    assert (kept.attempt, kept.executor, kept.handle) == (2, "local", {"pid": 7})
    assert kept.not_before == not_before
    assert {runtime[job_id].attempt for job_id in ids[1:]} == {0}

    # a second write changes only what it names
    with db.transaction() as session:
        JobRuntimeRepository(session).set_pending_info({ids[1]: (tenant_id, "moved", 0)})
    with db.read() as session:
        again = JobRuntimeRepository(session).runtime_for(tenant_id, ids[:3])
    assert (again[ids[1]].pending_reason, again[ids[1]].queue_position) == ("moved", 0)
    assert again[ids[2]] == runtime[ids[2]] and again[ids[0]] == kept


def test_the_queued_count_is_the_pending_rows_through_every_transition(db: Database) -> None:
    mine, other = tenant(db, "counted"), tenant(db, "other")
    ids = [submit(db, mine, framework) for framework in ("sklearn", "pytorch") * 4]
    submit(db, other)

    def counted() -> tuple[int, int]:
        with db.read() as session:
            rows = session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(JobRow.tenant_id == mine, JobRow.status == JobStatus.PENDING.value)
            )
            return QuotaRepository(session).count_jobs(mine, JobStatus.PENDING), int(rows or 0)

    assert counted() == (8, 8)
    with db.transaction() as session:
        transition_job(session, ids[0], tenant_id=mine, target=JobStatus.RUNNING)
        transition_job(session, ids[1], tenant_id=mine, target=JobStatus.CANCELLED)
    assert counted() == (6, 6)
    with db.transaction() as session:  # a failed attempt re-queued for its retry
        transition_job(session, ids[0], tenant_id=mine, target=JobStatus.PENDING)
    assert counted() == (7, 7)
    with db.transaction() as session:
        JobRepository(session, mine).delete_all()
    assert counted() == (0, 0)
