"""Tenant quotas: how much a tenant may hold at once, beside what it holds now.

Two kinds of limit:

- **Delay** limits (``max_concurrent_jobs``, ``max_gpus``, ``max_cpu_cores``,
  ``max_memory_gb``) bound what a tenant's *running* jobs hold. The scheduler reads them once
  per admission pass (``limits_for``) and keeps a job over them pending, with the reason.
- **Hard** limits (``max_queued_jobs``, ``max_deployments``, ``max_storage_bytes``) are checked
  where the resource is created (``admit``), inside the creating transaction, after
  serializing the tenant's creations (``QuotaRepository.lock_tenant``): two submits racing at
  the limit cannot both pass. Over one: ``QuotaExceeded`` (429 ``QUOTA_EXCEEDED``, naming the
  limit, its value and the current usage). ``max_storage_bytes`` counts every byte a tenant
  stores: its data files and the code packages it owns (``stored_objects``, charged by
  ``ml_platform.governance.storage_ledger`` before each is published) and its model versions'
  artifacts.

Each limit is the tenant's override (stored, set by administrators) or else the platform
default from Settings; ``None`` is "no limit". Usage is counted from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ml_platform.core.errors import InvalidArgument, QuotaExceeded
from ml_platform.core.jobs import JobStatus
from ml_platform.schemas.quotas import QuotaItem, QuotaKind, QuotaSource, TenantQuotas
from ml_platform.store.db import Database
from ml_platform.store.quotas import OVERRIDE_FIELDS, QuotaOverrides, QuotaRepository

if TYPE_CHECKING:
    from ml_platform.config import Settings

__all__ = [
    "Limit",
    "QuotaLimits",
    "QuotaOverrides",
    "QuotaReport",
    "QuotaService",
    "QuotaUsage",
    "defaults_from_settings",
    "quota_view",
]

logger = logging.getLogger(__name__)

Number = int | float


class Limit(str, Enum):
    """Every quota, named as its field (``max_...``) in Settings, the API and the CLI."""

    CONCURRENT_JOBS = "max_concurrent_jobs"
    GPUS = "max_gpus"
    CPU_CORES = "max_cpu_cores"
    MEMORY_GB = "max_memory_gb"
    QUEUED_JOBS = "max_queued_jobs"
    DEPLOYMENTS = "max_deployments"
    STORAGE_BYTES = "max_storage_bytes"

    @property
    def usage_field(self) -> str:
        """The ``QuotaUsage`` field this limit bounds (``max_gpus`` -> ``gpus``)."""
        return self.value.removeprefix("max_")

    @property
    def is_hard(self) -> bool:
        """Refused at creation (429), rather than waited for (pending)."""
        return self in HARD_LIMITS


HARD_LIMITS = frozenset({Limit.QUEUED_JOBS, Limit.DEPLOYMENTS, Limit.STORAGE_BYTES})
INTEGER_LIMITS = frozenset(set(Limit) - {Limit.CPU_CORES, Limit.MEMORY_GB})

STORED_WHAT = "bytes (data files, code packages, model artifacts)"
"""What ``max_storage_bytes`` counts, as its messages say it."""

# what the usage of each limit counts, for messages: "2 jobs pending", "3 GPUs in use"
_USAGE_PHRASE: dict[Limit, str] = {
    Limit.CONCURRENT_JOBS: "concurrent jobs running",
    Limit.GPUS: "GPUs in use",
    Limit.CPU_CORES: "CPU cores in use",
    Limit.MEMORY_GB: "GB of memory in use",
    Limit.QUEUED_JOBS: "jobs pending",
    Limit.DEPLOYMENTS: "deployments",
    Limit.STORAGE_BYTES: STORED_WHAT,
}
_WHAT_TO_DO: dict[Limit, str] = {
    Limit.QUEUED_JOBS: "wait until some of them start or cancel one",
    Limit.DEPLOYMENTS: "delete a deployment first",
    Limit.STORAGE_BYTES: "delete data files or model versions you no longer need",
}


# (unit, description) of each quota on the wire
_DESCRIBED: dict[Limit, tuple[str, str]] = {
    Limit.CONCURRENT_JOBS: ("jobs", "Jobs running at once"),
    Limit.GPUS: ("GPUs", "GPUs the running jobs hold"),
    Limit.CPU_CORES: ("cores", "CPU cores the running jobs hold"),
    Limit.MEMORY_GB: ("GB", "Memory the running jobs hold"),
    Limit.QUEUED_JOBS: ("jobs", "Jobs waiting to start (pending)"),
    Limit.DEPLOYMENTS: ("deployments", "Deployments"),
    Limit.STORAGE_BYTES: (
        "bytes",
        "Bytes stored: data files, code packages (each owner is charged), model artifacts",
    ),
}


@dataclass(frozen=True)
class QuotaLimits:
    """The limits in force for a tenant; ``None`` is "no limit"."""

    max_concurrent_jobs: int | None = None
    max_gpus: int | None = None
    max_cpu_cores: float | None = None
    max_memory_gb: float | None = None
    max_queued_jobs: int | None = None
    max_deployments: int | None = None
    max_storage_bytes: int | None = None

    def of(self, limit: Limit) -> Number | None:
        value: Number | None = getattr(self, limit.value)
        return value


@dataclass(frozen=True)
class QuotaUsage:
    """What a tenant holds now, counted from the store."""

    concurrent_jobs: int = 0
    gpus: int = 0
    cpu_cores: float = 0.0
    memory_gb: float = 0.0
    queued_jobs: int = 0
    deployments: int = 0
    storage_bytes: int = 0

    def of(self, limit: Limit) -> Number:
        value: Number = getattr(self, limit.usage_field)
        return value


@dataclass(frozen=True)
class QuotaReport:
    """One tenant's quota: the limits in force, where each comes from, and the usage."""

    tenant_id: str
    limits: QuotaLimits
    overrides: QuotaOverrides
    usage: QuotaUsage


def quota_view(report: QuotaReport, tenant_name: str) -> TenantQuotas:
    """The wire form: every quota, its limit beside the usage, in ``Limit`` order."""
    items = []
    for limit in Limit:
        unit, description = _DESCRIBED[limit]
        overridden = getattr(report.overrides, limit.value) is not None
        items.append(
            QuotaItem(
                name=limit.value,
                limit=report.limits.of(limit),
                usage=report.usage.of(limit),
                unit=unit,
                kind=QuotaKind.HARD if limit.is_hard else QuotaKind.DELAY,
                source=QuotaSource.OVERRIDE if overridden else QuotaSource.DEFAULT,
                description=description,
            )
        )
    return TenantQuotas(tenant_id=report.tenant_id, tenant_name=tenant_name, quotas=items)


def defaults_from_settings(settings: Settings) -> QuotaLimits:
    """The platform defaults (``ML_PLATFORM_TENANT_MAX_*``)."""
    return QuotaLimits(
        max_concurrent_jobs=settings.tenant_max_concurrent_jobs,
        max_gpus=settings.tenant_max_gpus,
        max_cpu_cores=settings.tenant_max_cpu_cores,
        max_memory_gb=settings.tenant_max_memory_gb,
        max_queued_jobs=settings.tenant_max_queued_jobs,
        max_deployments=settings.tenant_max_deployments,
        max_storage_bytes=settings.tenant_max_storage_bytes,
    )


def effective(defaults: QuotaLimits, overrides: QuotaOverrides) -> QuotaLimits:
    changes = {n: v for n, v in asdict(overrides).items() if v is not None}
    return replace(defaults, **changes)


def _show(value: Number) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def exceeded(
    limit: Limit,
    value: Number,
    usage: Number,
    adding: Number = 1,
    *,
    what: str = "this version",
    at_least: bool = False,
) -> QuotaExceeded:
    """The error for a refused creation: names the limit, its value and the usage; for
    storage also what the refused object (``what``) adds (``at_least``: a streamed upload
    refused before its end)."""
    if limit is Limit.STORAGE_BYTES:
        adds = f"at least {_show(adding)}" if at_least else _show(adding)
        detail = (
            f"tenant quota {limit.value} is {_show(value)}: the tenant already stores "
            f"{_show(usage)} {STORED_WHAT} and {what} adds {adds}"
        )
    else:
        detail = (
            f"tenant quota {limit.value} is {_show(value)}: the tenant already has "
            f"{_show(usage)} ({_USAGE_PHRASE[limit]})"
        )
    detail += f"; {_WHAT_TO_DO[limit]}, or ask an administrator to raise the quota"
    return QuotaExceeded(detail, limit=limit.value, limit_value=value, usage=usage)


def validate_overrides(values: Mapping[str, Number | None]) -> None:
    """422 for an unknown limit, a negative value or a fraction where a count is asked."""
    for name, value in values.items():
        if name not in OVERRIDE_FIELDS:
            raise InvalidArgument(f"unknown quota {name!r}; known: {', '.join(OVERRIDE_FIELDS)}")
        if value is None:
            continue
        if value < 0:
            raise InvalidArgument(f"quota {name} must be >= 0 (got {_show(value)})")
        if Limit(name) in INTEGER_LIMITS and value != int(value):
            raise InvalidArgument(f"quota {name} is a count: give an integer (got {value})")


class QuotaService:
    """Reads and sets tenant quotas and admits hard-limited creations (one per process)."""

    def __init__(self, db: Database, defaults: QuotaLimits) -> None:
        self._db = db
        self.defaults = defaults
        # observation hook (the API's /metrics sets it; the domain knows no metrics library)
        self.on_rejection: Callable[[str], None] = lambda _limit: None

    # -- reading ----------------------------------------------------------------------------
    def limits(self, tenant_id: str) -> QuotaLimits:
        with self._db.read() as session:
            return effective(self.defaults, QuotaRepository(session).overrides(tenant_id))

    def limits_for(self, tenant_ids: Iterable[str]) -> dict[str, QuotaLimits]:
        """The limits of every given tenant with one query (the scheduler's pass)."""
        ids = set(tenant_ids)
        if not ids:
            return {}
        with self._db.read() as session:
            stored = QuotaRepository(session).overrides_for(ids)
        return {t: effective(self.defaults, stored.get(t, QuotaOverrides())) for t in ids}

    def usage(self, tenant_id: str) -> QuotaUsage:
        with self._db.read() as session:
            return _usage(QuotaRepository(session), tenant_id)

    def report(self, tenant_id: str) -> QuotaReport:
        """Limits, overrides and usage read in one session."""
        with self._db.read() as session:
            repo = QuotaRepository(session)
            overrides = repo.overrides(tenant_id)
            usage = _usage(repo, tenant_id)
        return QuotaReport(tenant_id, effective(self.defaults, overrides), overrides, usage)

    # -- administering ----------------------------------------------------------------------
    def replace_overrides(self, tenant_id: str, values: Mapping[str, Number | None]) -> QuotaReport:
        """Set every override at once (absent or ``None``: the platform default)."""
        validate_overrides(values)
        with self._db.transaction() as session:
            QuotaRepository(session).save(tenant_id, _overrides_from(values))
        return self.report(tenant_id)

    def update_overrides(self, tenant_id: str, changes: Mapping[str, Number | None]) -> QuotaReport:
        """Change only the given overrides (``None``: back to the platform default)."""
        validate_overrides(changes)
        with self._db.transaction() as session:
            repo = QuotaRepository(session)
            merged = {**asdict(repo.overrides(tenant_id)), **changes}
            repo.save(tenant_id, _overrides_from(merged))
        return self.report(tenant_id)

    # -- admission of hard-limited creations ------------------------------------------------
    def admit(self, session: Session, tenant_id: str, limit: Limit, adding: Number = 1) -> None:
        """Inside the transaction that creates the resource, before it does: serialize the
        tenant's creations, then refuse (``QuotaExceeded``) when ``adding`` more would pass
        ``limit``. No-op (and no lock) when the tenant has no such limit."""
        repo = QuotaRepository(session)
        value = effective(self.defaults, repo.overrides(tenant_id)).of(limit)
        if value is None:
            return
        repo.lock_tenant(tenant_id)
        usage = _usage_of(repo, tenant_id, limit)
        if usage + adding > value:
            self.count_rejection(limit)
            raise exceeded(limit, value, usage, adding)

    def limit_in(self, session: Session, tenant_id: str, limit: Limit) -> Number | None:
        """The tenant's ``limit`` in force, read in the caller's session."""
        return effective(self.defaults, QuotaRepository(session).overrides(tenant_id)).of(limit)

    def precheck(self, tenant_id: str, limit: Limit, adding: Number) -> None:
        """``admit`` without the lock, before expensive work (copying an artifact); the
        authoritative check is ``admit`` in the creating transaction."""
        with self._db.read() as session:
            repo = QuotaRepository(session)
            value = effective(self.defaults, repo.overrides(tenant_id)).of(limit)
            if value is None:
                return
            usage = _usage_of(repo, tenant_id, limit)
        if usage + adding > value:
            self.count_rejection(limit)
            raise exceeded(limit, value, usage, adding)

    def count_rejection(self, limit: Limit) -> None:
        """Tell the observer (``/metrics``) that ``limit`` refused a creation."""
        try:
            self.on_rejection(limit.value)
        except Exception:  # an observer never turns a 429 into a 500
            logger.warning("quota rejection hook failed", exc_info=True)


def _overrides_from(values: Mapping[str, Number | None]) -> QuotaOverrides:
    kwargs: dict[str, Number | None] = {}
    for f in fields(QuotaOverrides):
        value = values.get(f.name)
        if value is not None and Limit(f.name) in INTEGER_LIMITS:
            value = int(value)
        elif value is not None:
            value = float(value)
        kwargs[f.name] = value
    return QuotaOverrides(**kwargs)  # type: ignore[arg-type]


def _usage_of(repo: QuotaRepository, tenant_id: str, limit: Limit) -> Number:
    if limit is Limit.QUEUED_JOBS:
        return repo.count_jobs(tenant_id, JobStatus.PENDING)
    if limit is Limit.DEPLOYMENTS:
        return repo.count_deployments(tenant_id)
    if limit is Limit.STORAGE_BYTES:
        return repo.stored_bytes(tenant_id)
    running = repo.running_compute(tenant_id)
    return {
        Limit.CONCURRENT_JOBS: running.jobs,
        Limit.GPUS: running.gpus,
        Limit.CPU_CORES: running.cpu_cores,
        Limit.MEMORY_GB: running.memory_gb,
    }[limit]


def _usage(repo: QuotaRepository, tenant_id: str) -> QuotaUsage:
    running = repo.running_compute(tenant_id)
    return QuotaUsage(
        concurrent_jobs=running.jobs,
        gpus=running.gpus,
        cpu_cores=running.cpu_cores,
        memory_gb=running.memory_gb,
        queued_jobs=repo.count_jobs(tenant_id, JobStatus.PENDING),
        deployments=repo.count_deployments(tenant_id),
        storage_bytes=repo.stored_bytes(tenant_id),
    )
