"""Job runtime state: attempts and executor handles, status history, metric series, and the
scheduler lease. Scheduling queries span tenants on purpose (the scheduler serves them all);
everything a tenant can read goes through a tenant-scoped method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.jobs import JobStatus
from ml_platform.store.base import Base, JSONType, UTCDateTime, utcnow
from ml_platform.store.crypto import session_box
from ml_platform.store.jobs import JobCountRow, JobRow, job_record
from ml_platform.store.records import JobRecord

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
_BATCH = 500  # rows written (or ids looked up) per statement: far under parameter limits


class JobRuntimeRow(Base):
    """One row per job that the scheduler has looked at."""

    __tablename__ = "job_runtime"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str | None] = mapped_column(String(16), nullable=True)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pending_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    queue_position: Mapped[int | None] = mapped_column(Integer, nullable=True)


class JobEventRow(Base):
    """Status history: every transition with its time and reason."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobMetricRow(Base):
    """One metric point: (name, step, value, timestamp)."""

    __tablename__ = "job_metrics"
    __table_args__ = (
        Index("ix_job_metrics_job", "job_id", "id"),
        Index("ix_job_metrics_job_name", "job_id", "name", "id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(250))
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    value: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class JobLogLineRow(Base):
    """One log line of a job; ``line_id`` is its 1-based number (the SSE event id)."""

    __tablename__ = "job_log_lines"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stream: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class LogLineRecord:
    line_id: int
    created_at: datetime
    stream: str
    text: str


class JobLogRepository:
    """A job's log lines. Not tenant-scoped: the API checks the job's tenant first."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def last_line_id(self, job_id: str) -> int:
        query = select(func.max(JobLogLineRow.line_id)).where(JobLogLineRow.job_id == job_id)
        return int(self._session.scalar(query) or 0)

    def append(self, job_id: str, first_id: int, rows: Sequence[tuple[datetime, str, str]]) -> None:
        """Insert lines numbered from ``first_id``; a racing writer makes this raise
        ``IntegrityError`` (the caller renumbers and retries)."""
        self._session.execute(
            insert(JobLogLineRow),
            [
                {
                    "job_id": job_id,
                    "line_id": first_id + offset,
                    "created_at": created_at,
                    "stream": stream,
                    "text": text,
                }
                for offset, (created_at, stream, text) in enumerate(rows)
            ],
        )

    def after(self, job_id: str, after_id: int, limit: int | None) -> list[LogLineRecord]:
        query = (
            select(JobLogLineRow)
            .where(JobLogLineRow.job_id == job_id, JobLogLineRow.line_id > after_id)
            .order_by(JobLogLineRow.line_id)
        )
        if limit is not None:
            query = query.limit(limit)
        return [
            LogLineRecord(row.line_id, row.created_at, row.stream, row.text)
            for row in self._session.scalars(query)
        ]


class SchedulerLeaseRow(Base):
    """Who runs the scheduler: one row per lease name, renewed while the holder lives."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class JobEventRecord:
    id: int
    status: JobStatus
    attempt: int
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class MetricRecord:
    id: int
    name: str
    step: int | None
    value: float
    timestamp: datetime


@dataclass(frozen=True)
class RuntimeRecord:
    job_id: str
    tenant_id: str
    attempt: int
    executor: str | None
    handle: dict[str, Any] | None
    not_before: datetime | None
    pending_reason: str | None
    queue_position: int | None


def _of_jobs(table: Any, dialect: str) -> Any:
    """``table``'s rows of a page of jobs: built once, with the tenant and the page's ids
    bound (a list's extras, read like its jobs: Core columns, no statement per request). On
    PostgreSQL the ids are one array (``= ANY``): an ``IN`` list is expanded into 50
    placeholders per execution, by SQLAlchemy and again by the driver."""
    ids = (
        table.c.job_id == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
        if dialect == "postgresql"
        else table.c.job_id.in_(bindparam("ids", expanding=True))
    )
    return select(*table.columns).where(table.c.tenant_id == bindparam("tenant"), ids)


_RUNTIMES_OF = {
    dialect: _of_jobs(JobRuntimeRow.__table__, dialect) for dialect in ("sqlite", "postgresql")
}
_EVENTS_OF = {
    dialect: _of_jobs(JobEventRow.__table__, dialect).order_by(JobEventRow.__table__.c.id)
    for dialect in ("sqlite", "postgresql")
}


def _runtime(row: JobRuntimeRow | Row[*tuple[Any, ...]]) -> RuntimeRecord:
    return RuntimeRecord(
        job_id=row.job_id,
        tenant_id=row.tenant_id,
        attempt=row.attempt,
        executor=row.executor,
        handle=row.handle,
        not_before=row.not_before,
        pending_reason=row.pending_reason,
        queue_position=row.queue_position,
    )


def _queued(job: JobRow, runtime: JobRuntimeRow | None) -> tuple[JobRecord, RuntimeRecord | None]:
    return job_record(job), _runtime(runtime) if runtime else None


class JobRuntimeRepository:
    """Queries of the scheduler and the job runtime (logs aside, which live in files)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- scheduling (all tenants) ---------------------------------------------------------

    def jobs_with_status(self, status: JobStatus) -> list[tuple[JobRecord, RuntimeRecord | None]]:
        rows = self._session.execute(
            select(JobRow, JobRuntimeRow)
            .outerjoin(JobRuntimeRow, JobRuntimeRow.job_id == JobRow.id)
            .where(JobRow.status == status.value)
            .order_by(JobRow.created_at, JobRow.id)
        ).all()
        return [_queued(job, rt) for job, rt in rows]

    def pending_delta(
        self, since: datetime | None
    ) -> tuple[int, list[tuple[JobRecord, RuntimeRecord | None]]]:
        """(pending jobs, the pending jobs created at or after ``since``; all without it).

        One statement, so one snapshot on both databases: the count (the trigger-kept
        ``job_counts``) and the rows (a range of ``ix_jobs_status_created``) agree even while
        submits commit, and a count that differs from what the caller holds means a pending
        job left or came back, never a race with a submit.
        """
        counted = (
            select(func.coalesce(func.sum(JobCountRow.n), 0).label("n"))
            .where(JobCountRow.status == JobStatus.PENDING.value)
            .subquery()
        )
        joined = JobRow.status == JobStatus.PENDING.value
        if since is not None:
            joined = and_(joined, JobRow.created_at >= since)
        rows = self._session.execute(
            select(counted.c.n, JobRow, JobRuntimeRow)
            .select_from(counted)
            .outerjoin(JobRow, joined)
            .outerjoin(JobRuntimeRow, JobRuntimeRow.job_id == JobRow.id)
            .order_by(JobRow.created_at, JobRow.id)
        ).all()
        count = int(rows[0][0]) if rows else 0
        return count, [_queued(job, rt) for _, job, rt in rows if job is not None]

    def pending_ids(self) -> set[str]:
        """The ids of every pending job: the cheap comparison of the scheduler's queue."""
        query = select(JobRow.id).where(JobRow.status == JobStatus.PENDING.value)
        return set(self._session.scalars(query))

    def pending_jobs(self, job_ids: Iterable[str]) -> list[tuple[JobRecord, RuntimeRecord | None]]:
        """The given jobs that are still pending, with their runtime rows."""
        ids = list(job_ids)
        found: list[tuple[JobRecord, RuntimeRecord | None]] = []
        for start in range(0, len(ids), _BATCH):
            rows = self._session.execute(
                select(JobRow, JobRuntimeRow)
                .outerjoin(JobRuntimeRow, JobRuntimeRow.job_id == JobRow.id)
                .where(
                    JobRow.id.in_(ids[start : start + _BATCH]),
                    JobRow.status == JobStatus.PENDING.value,
                )
            ).all()
            found.extend(_queued(job, rt) for job, rt in rows)
        return found

    def statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        ids = list(job_ids)
        if not ids:
            return {}
        query = select(JobRow.id, JobRow.status).where(JobRow.id.in_(ids))
        rows = self._session.execute(query)
        return {job_id: JobStatus(status) for job_id, status in rows}

    def job(self, job_id: str) -> JobRecord | None:
        row = self._session.get(JobRow, job_id)
        return job_record(row) if row else None

    def env_vars(self, job_id: str) -> dict[str, str]:
        """The job's environment, decrypted: only for the launch the executor gets."""
        stored = self._session.scalar(select(JobRow.env_vars).where(JobRow.id == job_id))
        return session_box(self._session).decrypt_values(stored) if stored else {}

    def update_terminal(self, job_id: str, status: JobStatus, **fields: Any) -> None:
        """Fill in details (resource usage) of a job that already reached ``status``."""
        self._session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == status.value)
            .values(**fields)
        )

    def upsert_runtime(self, job_id: str, tenant_id: str, **fields: Any) -> None:
        result = self._session.execute(
            update(JobRuntimeRow).where(JobRuntimeRow.job_id == job_id).values(**fields)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            self._session.execute(
                insert(JobRuntimeRow).values(job_id=job_id, tenant_id=tenant_id, **fields)
            )

    def set_pending_info(self, info: dict[str, tuple[str, str | None, int | None]]) -> None:
        """``job_id -> (tenant_id, reason, position)`` for pending jobs: one
        ``INSERT ... ON CONFLICT DO UPDATE`` per ``_BATCH`` jobs, which sets only the
        reason and the position of the rows that exist."""
        dialect = self._session.get_bind().dialect.name
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        items = list(info.items())
        for start in range(0, len(items), _BATCH):
            statement = upsert(JobRuntimeRow).values(
                [
                    {
                        "job_id": job_id,
                        "tenant_id": tenant_id,
                        "attempt": 0,
                        "pending_reason": reason,
                        "queue_position": position,
                    }
                    for job_id, (tenant_id, reason, position) in items[start : start + _BATCH]
                ]
            )
            statement = statement.on_conflict_do_update(
                index_elements=["job_id"],
                set_={
                    "pending_reason": statement.excluded.pending_reason,
                    "queue_position": statement.excluded.queue_position,
                },
            )
            self._session.execute(statement)

    # Status events are written only by ``store.jobs.transition_job``, with the change.

    # -- metrics ---------------------------------------------------------------------------

    def add_metrics(
        self, job_id: str, tenant_id: str, points: Sequence[tuple[str, int | None, float, datetime]]
    ) -> None:
        if not points:
            return
        self._session.execute(
            insert(JobMetricRow),
            [
                {
                    "job_id": job_id,
                    "tenant_id": tenant_id,
                    "name": n,
                    "step": s,
                    "value": v,
                    "timestamp": t,
                }
                for n, s, v, t in points
            ],
        )
        latest = dict(self._session.scalar(select(JobRow.metrics).where(JobRow.id == job_id)) or {})
        for name, _step, value, _ts in points:
            latest[name] = value
        self._session.execute(update(JobRow).where(JobRow.id == job_id).values(metrics=latest))

    # -- tenant-scoped reads ---------------------------------------------------------------

    def runtime_for(self, tenant_id: str, job_ids: Sequence[str]) -> dict[str, RuntimeRecord]:
        if not job_ids:
            return {}
        values = {"tenant": tenant_id, "ids": list(job_ids)}
        statement = _RUNTIMES_OF[self._session.get_bind().dialect.name]
        rows = self._session.execute(statement, values).all()
        return {row.job_id: _runtime(row) for row in rows}

    def events_for(self, tenant_id: str, job_ids: Sequence[str]) -> dict[str, list[JobEventRecord]]:
        result: dict[str, list[JobEventRecord]] = {job_id: [] for job_id in job_ids}
        if not job_ids:
            return result
        values = {"tenant": tenant_id, "ids": list(job_ids)}
        statement = _EVENTS_OF[self._session.get_bind().dialect.name]
        rows = self._session.execute(statement, values).all()
        for row in rows:
            result[row.job_id].append(
                JobEventRecord(
                    id=row.id,
                    status=JobStatus(row.status),
                    attempt=row.attempt,
                    reason=row.reason,
                    created_at=row.created_at,
                )
            )
        return result

    def metric_history(
        self,
        tenant_id: str,
        job_id: str,
        *,
        name: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[MetricRecord]:
        conditions = [
            JobMetricRow.job_id == job_id,
            JobMetricRow.tenant_id == tenant_id,
            JobMetricRow.id > after_id,
        ]
        if name is not None:
            conditions.append(JobMetricRow.name == name)
        rows = self._session.scalars(
            select(JobMetricRow).where(and_(*conditions)).order_by(JobMetricRow.id).limit(limit)
        )
        return [
            MetricRecord(id=r.id, name=r.name, step=r.step, value=r.value, timestamp=r.timestamp)
            for r in rows
        ]

    def job_status(self, tenant_id: str, job_id: str) -> JobStatus | None:
        value = self._session.scalar(
            select(JobRow.status).where(JobRow.id == job_id, JobRow.tenant_id == tenant_id)
        )
        return JobStatus(value) if value else None

    # -- the scheduler lease ----------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the lease; True when ``holder`` holds it until now + ttl."""
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        result = self._session.execute(
            update(SchedulerLeaseRow)
            .where(
                SchedulerLeaseRow.name == name,
                or_(SchedulerLeaseRow.holder == holder, SchedulerLeaseRow.expires_at < now),
            )
            .values(holder=holder, expires_at=expires)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            return True
        exists = self._session.scalar(
            select(func.count())
            .select_from(SchedulerLeaseRow)
            .where(SchedulerLeaseRow.name == name)
        )
        if exists:
            return False
        try:
            with self._session.begin_nested():
                self._session.add(SchedulerLeaseRow(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def holds_lease(self, name: str, holder: str) -> bool:
        """Whether ``holder`` holds the lease now, read under a row lock (PostgreSQL): a
        take-over waits for this transaction, so what it writes is fenced by the lease."""
        expires = self._session.scalar(
            select(SchedulerLeaseRow.expires_at)
            .where(SchedulerLeaseRow.name == name, SchedulerLeaseRow.holder == holder)
            .with_for_update()
        )
        return expires is not None and expires > utcnow()

    def release_lease(self, name: str, holder: str) -> None:
        self._session.execute(
            delete(SchedulerLeaseRow).where(
                SchedulerLeaseRow.name == name, SchedulerLeaseRow.holder == holder
            )
        )
