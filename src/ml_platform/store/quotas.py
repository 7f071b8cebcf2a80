"""Tenant quota overrides and the usage queries quotas are checked against.

One ``tenant_quotas`` row per tenant that has any override (migration 0008_quotas); a NULL
column means "the platform default" (Settings). Usage is always computed from the rows that
hold it (jobs, deployments, model versions, stored objects), never kept in a counter that
application code updates (jobs per status come from ``job_counts``, which database triggers
keep exact in the transaction that changes a job).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.jobs import JobStatus
from ml_platform.store.base import Base, UTCDateTime, utcnow
from ml_platform.store.deployments import DeploymentRow
from ml_platform.store.jobs import JobRepository, JobRow
from ml_platform.store.models import ModelVersionRow
from ml_platform.store.stored_objects import StoredObjectRepository
from ml_platform.store.tenants import TenantRow


class TenantQuotaRow(Base):
    __tablename__ = "tenant_quotas"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_cpu_cores: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_memory_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_deployments: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_storage_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class QuotaOverrides:
    """A tenant's stored overrides; ``None`` is "the platform default"."""

    max_concurrent_jobs: int | None = None
    max_gpus: int | None = None
    max_cpu_cores: float | None = None
    max_memory_gb: float | None = None
    max_queued_jobs: int | None = None
    max_deployments: int | None = None
    max_storage_bytes: int | None = None


OVERRIDE_FIELDS = tuple(f.name for f in fields(QuotaOverrides))


@dataclass(frozen=True)
class RunningCompute:
    """What one tenant's running jobs hold: how many, and their summed compute requests."""

    jobs: int = 0
    cpu_cores: float = 0.0
    memory_gb: float = 0.0
    gpus: int = 0


def compute_of(spec: dict[str, Any]) -> tuple[float, float, int]:
    """A job spec's ``compute`` request as (cpu_cores, memory_gb, gpus)."""
    compute = spec.get("compute") or {}
    return (
        float(compute.get("cpu_cores") or 0),
        float(compute.get("memory_gb") or 0),
        int(compute.get("gpu_count") or 0),
    )


def _overrides(row: TenantQuotaRow | None) -> QuotaOverrides:
    if row is None:
        return QuotaOverrides()
    return QuotaOverrides(**{name: getattr(row, name) for name in OVERRIDE_FIELDS})


class QuotaRepository:
    """Global (admin and scheduler) reads and writes of quota overrides, and usage queries."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- overrides --------------------------------------------------------------------------
    def overrides(self, tenant_id: str) -> QuotaOverrides:
        return _overrides(self._session.get(TenantQuotaRow, tenant_id))

    def overrides_for(self, tenant_ids: Iterable[str]) -> dict[str, QuotaOverrides]:
        """Every given tenant's overrides in one query (tenants without a row are absent)."""
        ids = list(set(tenant_ids))
        if not ids:
            return {}
        rows = self._session.scalars(
            select(TenantQuotaRow).where(TenantQuotaRow.tenant_id.in_(ids))
        )
        return {row.tenant_id: _overrides(row) for row in rows}

    def save(self, tenant_id: str, overrides: QuotaOverrides) -> QuotaOverrides:
        row = self._session.get(TenantQuotaRow, tenant_id)
        if row is None:
            row = TenantQuotaRow(tenant_id=tenant_id)
            self._session.add(row)
        for name in OVERRIDE_FIELDS:
            setattr(row, name, getattr(overrides, name))
        row.updated_at = utcnow()
        self._session.flush()
        return _overrides(row)

    # -- serializing the checks of one tenant ------------------------------------------------
    def lock_tenant(self, tenant_id: str) -> None:
        """Serialize this tenant's quota-checked creations until the transaction ends.

        A no-op write to the tenant's row: on PostgreSQL it takes the row lock (a non-key
        column, so the foreign keys of concurrent inserts are not blocked), on SQLite the
        database write lock; a second creation waits here and then counts what the first one
        committed. Call it first in the transaction, before the usage query.
        """
        self._session.execute(
            update(TenantRow)
            .where(TenantRow.id == tenant_id)
            .values(created_at=TenantRow.created_at)
        )

    # -- usage ------------------------------------------------------------------------------
    def count_jobs(self, tenant_id: str, status: JobStatus) -> int:
        """From the trigger-kept ``job_counts`` (``JobRepository.count``): one index lookup,
        not a count of the tenant's pending rows on every submit."""
        return JobRepository(self._session, tenant_id).count(status)

    def running_compute(self, tenant_id: str) -> RunningCompute:
        specs = self._session.scalars(
            select(JobRow.spec).where(
                JobRow.tenant_id == tenant_id, JobRow.status == JobStatus.RUNNING.value
            )
        ).all()
        cpu, memory, gpus = 0.0, 0.0, 0
        for spec in specs:
            c, m, g = compute_of(spec)
            cpu, memory, gpus = cpu + c, memory + m, gpus + g
        return RunningCompute(jobs=len(specs), cpu_cores=cpu, memory_gb=memory, gpus=gpus)

    def count_deployments(self, tenant_id: str) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(DeploymentRow)
                .where(DeploymentRow.tenant_id == tenant_id)
            )
            or 0
        )

    def stored_bytes(self, tenant_id: str) -> int:
        """Every byte the tenant stores: its data files and the code packages it owns
        (``stored_objects``) and the artifact of every model version it holds (each counted
        from its own row, once)."""
        artifacts = int(
            self._session.scalar(
                select(func.coalesce(func.sum(ModelVersionRow.size_bytes), 0)).where(
                    ModelVersionRow.tenant_id == tenant_id
                )
            )
            or 0
        )
        return artifacts + StoredObjectRepository(self._session).total(tenant_id)
