"""The training-job service: validates intent, owns transactions, returns wire models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ml_platform.auth.principal import Principal
from ml_platform.core.errors import Conflict, NotFound, PermissionDenied
from ml_platform.core.ids import is_well_formed, new_id
from ml_platform.core.jobs import TERMINAL_STATUSES, JobStatus
from ml_platform.governance.quotas import Limit, QuotaService
from ml_platform.jobs.engine import JobEngine
from ml_platform.schemas.jobs import JobListResponse, TrainingJob, TrainingJobSpec
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository
from ml_platform.store.records import JobRecord

CANCELLABLE = (JobStatus.PENDING, JobStatus.RUNNING)


def to_wire(record: JobRecord, decorations: Mapping[str, Any] | None = None) -> TrainingJob:
    """The job's wire form; ``decorations`` are the runtime's fields (``engine.decorations``)."""
    return TrainingJob(
        id=record.id,
        spec=TrainingJobSpec.model_validate(record.spec),
        status=record.status,
        tenant_id=record.tenant_id,
        created_by=record.created_by,
        created_at=record.created_at,
        started_at=record.started_at,
        completed_at=record.completed_at,
        error_message=record.error_message,
        metrics=record.metrics,
        resource_usage=record.resource_usage,
        **(decorations or {}),
    )


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"training job {job_id!r} not found")


class JobService:
    def __init__(
        self, db: Database, engine: JobEngine | None = None, quotas: QuotaService | None = None
    ) -> None:
        self._db = db
        self._engine = engine  # the job runtime: submit-time checks, scheduling, extras
        self._quotas = quotas  # max_queued_jobs, checked in the submitting transaction

    def _wired(
        self, tenant_id: str, records: Sequence[JobRecord], session: Session | None = None
    ) -> list[TrainingJob]:
        """The jobs' wire forms, with the runtime's fields when there is a runtime (read in
        ``session`` when given: the caller's read of the jobs themselves)."""
        if self._engine is None:
            return [to_wire(record) for record in records]
        extra = self._engine.decorations(tenant_id, records, session)
        return [to_wire(record, extra[record.id]) for record in records]

    def submit(self, principal: Principal, spec: TrainingJobSpec) -> TrainingJob:
        if spec.tenant_id is not None and spec.tenant_id != principal.tenant_id:
            raise PermissionDenied(
                f"cannot create jobs for tenant {spec.tenant_id!r}: "
                f"your credentials belong to tenant {principal.tenant_id!r}"
            )
        if self._engine is not None:
            self._engine.validate_submission(
                principal.tenant_id,
                data_path=spec.data_path,
                output_path=spec.output_path,
                source=spec.source,
            )
        stored = spec.model_dump(mode="json")  # env_vars is excluded; stored apart below
        stored["tenant_id"] = principal.tenant_id
        with self._db.transaction() as session:
            if self._quotas is not None:
                self._quotas.admit(session, principal.tenant_id, Limit.QUEUED_JOBS)
            record = JobRepository(session, principal.tenant_id).add(
                job_id=new_id("job"),
                name=spec.name,
                framework=spec.framework.value,
                spec=stored,
                env_vars=spec.env_vars,
                tags=spec.tags,
                created_by=principal.name,
            )
        if self._engine is not None:
            self._engine.job_changed(record.id, final=False)
        return self._wired(principal.tenant_id, [record])[0]

    def get(self, principal: Principal, job_id: str) -> TrainingJob:
        if not is_well_formed(job_id, "job"):
            raise job_not_found(job_id)
        with self._db.read() as session:
            record = JobRepository(session, principal.tenant_id).get(job_id)
            if record is None:
                raise job_not_found(job_id)
            return self._wired(principal.tenant_id, [record], session)[0]

    def search(
        self,
        principal: Principal,
        *,
        status: JobStatus | None,
        framework: str | None,
        tags: Mapping[str, str],
        page: int,
        page_size: int,
    ) -> JobListResponse:
        with self._db.read() as session:
            result = JobRepository(session, principal.tenant_id).search(
                status=status,
                framework=framework,
                tags=tags,
                offset=(page - 1) * page_size,
                limit=page_size,
            )
            jobs = self._wired(principal.tenant_id, result.items, session)
        return JobListResponse(
            jobs=jobs,
            total=result.total,
            page=page,
            page_size=page_size,
            has_more=page * page_size < result.total,
        )

    def search_after(
        self,
        principal: Principal,
        *,
        status: JobStatus | None,
        framework: str | None,
        tags: Mapping[str, str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[TrainingJob]:
        """Keyset paging (v2 cursors): up to ``limit`` jobs after ``after`` = (created_at, id)."""
        with self._db.read() as session:
            records = JobRepository(session, principal.tenant_id).search_after(
                status=status, framework=framework, tags=tags, after=after, limit=limit
            )
            return self._wired(principal.tenant_id, records, session)

    def cancel(self, principal: Principal, job_id: str) -> TrainingJob:
        """Mark the job cancelled; an executor running it stops it (see the scheduler)."""
        if not is_well_formed(job_id, "job"):
            raise job_not_found(job_id)
        with self._db.transaction() as session:
            repo = JobRepository(session, principal.tenant_id)
            record = repo.get(job_id)
            if record is None:
                raise job_not_found(job_id)
            if record.status in TERMINAL_STATUSES:
                raise Conflict(f"training job {job_id!r} already finished ({record.status.value})")
            reason = "cancelled by " + principal.name
            # A job that finished meanwhile makes this a Conflict naming its status.
            repo.transition(
                job_id,
                expected=CANCELLABLE,
                target=JobStatus.CANCELLED,
                reason=reason,
                completed_at=utcnow(),
                error_message=reason,
            )
            updated = repo.get(job_id)
        assert updated is not None
        if self._engine is not None:
            self._engine.job_changed(job_id, final=True)
        return self._wired(principal.tenant_id, [updated])[0]
