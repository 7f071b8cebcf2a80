"""The job runtime, assembled from settings: executor, scheduler, logs, metrics, packages.

``JobEngine`` is built once by the composition root and started in the app's lifespan. The
REST adapters read logs, metrics and status history through it; ``JobService`` asks it to
validate submissions (paths, code package) and to wake the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.orm import Session

from ml_platform.config import ExecutorKind, Settings
from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound
from ml_platform.core.jobs import JobStatus
from ml_platform.governance.quotas import QuotaService, defaults_from_settings
from ml_platform.jobs.code_packages import CodePackageLimits, CodePackageStore
from ml_platform.jobs.executors.base import Executor
from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.metrics import MetricPoint
from ml_platform.jobs.paths import PathPolicy
from ml_platform.jobs.scheduler import Capacity, Scheduler
from ml_platform.jobs.signals import JobSignals
from ml_platform.schemas.jobs import StatusTransition
from ml_platform.storage import storage_from_settings
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import (
    JobEventRecord,
    JobRuntimeRepository,
    MetricRecord,
    RuntimeRecord,
)
from ml_platform.store.records import JobRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobExtras:
    """What the runtime adds to a job's wire representation."""

    runtime: RuntimeRecord | None
    events: list[JobEventRecord]


def node_capacity(settings: Settings) -> Capacity:
    memory = settings.node_memory_gb
    if memory is None:
        memory = int(psutil.virtual_memory().total // (1024**3)) or 1
    return Capacity(
        cpu_cores=float(settings.node_cpu_cores), memory_gb=float(memory), gpus=settings.node_gpus
    )


class JobEngine:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        data_dir = Path(settings.data_dir).resolve()
        # Log lines in the database where replicas share one (PostgreSQL); SQLite is one
        # machine's store, so its lines stay in files (and its single writer stays free).
        shared_logs = db.dialect != "sqlite"
        fanout = None
        if shared_logs and settings.redis_url:
            from ml_platform.jobs.log_fanout import RedisLogFanout

            fanout = RedisLogFanout(settings.redis_url)
        self.storage = storage_from_settings(settings)
        self.logs = LogStore(
            data_dir / "jobs",
            db=db if shared_logs else None,
            fanout=fanout,
            archive=self.storage,
            keep_live_after_archive=settings.job_logs_keep_live,
        )
        # ended jobs' logs are archived off the event loop, one at a time, in order
        self._archiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlp-log-archive")
        self.packages = CodePackageStore(
            self.storage,
            data_dir / "cache" / "code-packages",
            CodePackageLimits(max_archive_bytes=settings.max_code_package_bytes),
        )
        self.paths = PathPolicy.from_settings(settings, db)
        self.signals = JobSignals()
        self.executor = self._build_executor(data_dir)
        # tenant quotas: the scheduler's delay limits, the services' hard ones (one instance)
        self.quotas = QuotaService(db, defaults_from_settings(settings))
        self.scheduler: Scheduler | None = None
        if settings.scheduler_enabled:
            self.scheduler = Scheduler(
                db=db,
                executor=self.executor,
                logs=self.logs,
                packages=self.packages,
                paths=self.paths,
                capacity=node_capacity(settings),
                tenant_max_concurrent_jobs=settings.tenant_max_concurrent_jobs,
                interval_seconds=settings.scheduler_interval_seconds,
                retry_backoff_seconds=settings.job_retry_backoff_seconds,
                lease_seconds=settings.scheduler_lease_seconds,
                on_change=self._scheduler_changed,
                fit_to_node=settings.fit_to_node and settings.executor is ExecutorKind.LOCAL,
                quotas=self.quotas,
            )

    def _build_executor(self, data_dir: Path) -> Executor:
        settings = self.settings
        if settings.executor is ExecutorKind.RAY:
            from ml_platform.jobs.executors.ray import RayExecutor

            if not settings.ray_address:
                raise ValueError("ML_PLATFORM_EXECUTOR=ray needs ML_PLATFORM_RAY_ADDRESS")
            return RayExecutor(
                address=settings.ray_address,
                jobs_dir=data_dir / "jobs",
                logs=self.logs,
                on_metrics=self.record_metrics,
                storage=None if self.storage.is_local else self.storage,
                pass_storage_secrets=settings.ray_pass_storage_secrets,
            )
        from ml_platform.jobs.executors.local import LocalExecutor

        return LocalExecutor(
            jobs_dir=data_dir / "jobs",
            logs=self.logs,
            on_metrics=self.record_metrics,
            python=settings.job_python,
            job_user=settings.job_user,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            tenant_root=self.paths.tenant_root,
            storage=None if self.storage.is_local else self.storage,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        else:
            await self.executor.aclose()
        await asyncio.to_thread(self._archiver.shutdown, wait=True)

    def _scheduler_changed(self, job_id: str, final: bool) -> None:
        """The scheduler moved a job: wake listeners; archive its logs once it is final (a
        queue position, a start or a retry's re-queue is not: no archive look-up then)."""
        self.signals.fire(job_id)
        if final:
            self._archive_later(job_id, executor_done=True)

    def _archive_later(self, job_id: str, *, executor_done: bool) -> None:
        """The one archive path of every change of a job's status (the scheduler's finish, a
        cancel through the API, wherever it lands): off the event loop, one at a time."""
        with contextlib.suppress(RuntimeError):  # shut down: the next start archives nothing
            self._archiver.submit(self._archive_if_final, job_id, executor_done=executor_done)

    def _archive_if_final(self, job_id: str, *, executor_done: bool) -> None:
        """Archive the job's logs to the object store once no more lines come: the job is
        terminal, this process's scheduler does not run it, and either the scheduler has
        finished it (``executor_done``) or no executor ever held its current attempt (no
        handle: it ended while pending, e.g. cancelled in the queue or in a retry's backoff).
        A job cancelled while running is archived by the scheduler that stops it. A failure
        leaves the live lines, which still answer reads."""
        try:
            if self.scheduler is not None and self.scheduler.tenant_of(job_id) is not None:
                return  # running here: its executor still writes (the finish archives it)
            with self.db.read() as session:
                repo = JobRuntimeRepository(session)
                job = repo.job(job_id)
                if job is None or not JobStatus(job.status).is_terminal:
                    return
                runtime = (
                    None if executor_done else repo.runtime_for(job.tenant_id, [job_id]).get(job_id)
                )
            if executor_done or runtime is None or runtime.handle is None:
                self.logs.archive(job_id)
        except Exception:
            logger.exception("archiving the logs of job %s failed; its live lines remain", job_id)

    # -- hooks for JobService (called from worker threads) -------------------------------------

    def validate_submission(
        self, tenant_id: str, *, data_path: str, output_path: str, source: str | None
    ) -> None:
        """422 at submit time for paths outside the tenant's roots or an unknown package."""
        violations: list[FieldViolation] = []
        for check, value in (
            (self.paths.check_data_path, data_path),
            (self.paths.check_output_path, output_path),
        ):
            try:
                check(tenant_id, value)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        if source is not None:
            try:
                self.packages.get(tenant_id, source)
            except (NotFound, InvalidArgument):
                violations.append(FieldViolation("source", f"code package {source!r} not found"))
        if violations:
            summary = "; ".join(f"{v.field}: {v.message}" for v in violations)
            raise InvalidArgument(summary, violations)
        self.paths.ensure_tenant_root(tenant_id)

    def job_changed(self, job_id: str, *, final: bool) -> None:
        """A job was submitted (``final=False``) or cancelled (``final=True``): schedule now,
        wake listeners; a final job's logs are archived (a submit costs no archive look-up)."""
        if self.scheduler is not None:
            self.scheduler.wake()
        self.signals.fire(job_id)
        self.logs.notify(job_id)
        if final:
            self._archive_later(job_id, executor_done=False)  # cancelled while pending: now

    # -- metrics ----------------------------------------------------------------------------------

    async def record_metrics(self, job_id: str, points: Sequence[MetricPoint]) -> None:
        rows = [(p.name, p.step, p.value, p.timestamp) for p in points]
        await asyncio.to_thread(self._store_metrics, job_id, rows)
        self.signals.fire(job_id)

    def _store_metrics(
        self, job_id: str, rows: list[tuple[str, int | None, float, datetime]]
    ) -> None:
        tenant = self.scheduler.tenant_of(job_id) if self.scheduler else None
        with self.db.transaction() as session:
            repo = JobRuntimeRepository(session)
            if tenant is None:
                job = repo.job(job_id)
                if job is None:
                    return
                tenant = job.tenant_id
            repo.add_metrics(job_id, tenant, rows)

    # -- tenant-scoped reads for the API (sync: call from a worker thread) ----------------------

    def extras(
        self, tenant_id: str, job_ids: Sequence[str], session: Session | None = None
    ) -> dict[str, JobExtras]:
        """Each job's runtime row and status events, read in ``session`` when given (the
        caller's read of the jobs themselves: one connection and transaction, not two)."""
        if session is None:
            with self.db.read() as own:
                return self.extras(tenant_id, job_ids, own)
        repo = JobRuntimeRepository(session)
        runtimes = repo.runtime_for(tenant_id, job_ids)
        events = repo.events_for(tenant_id, job_ids)
        return {
            job_id: JobExtras(runtimes.get(job_id), events.get(job_id, [])) for job_id in job_ids
        }

    def decorations(
        self, tenant_id: str, jobs: Sequence[JobRecord], session: Session | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each job's runtime additions to its wire form (``decorations``), by job id."""
        extras = self.extras(tenant_id, [job.id for job in jobs], session)
        return {job.id: job_decorations(job, extras[job.id]) for job in jobs}

    def status(self, tenant_id: str, job_id: str) -> JobStatus:
        """The job's status; ``NotFound`` for a missing job or another tenant's."""
        with self.db.read() as session:
            status = JobRuntimeRepository(session).job_status(tenant_id, job_id)
        if status is None:
            raise NotFound(f"training job {job_id!r} not found")
        return status

    def metric_history_after(
        self, tenant_id: str, job_id: str, after_id: int, limit: int = 500
    ) -> list[MetricRecord]:
        return self.metric_history(tenant_id, job_id, name=None, after_id=after_id, limit=limit)

    def metric_history(
        self, tenant_id: str, job_id: str, *, name: str | None, after_id: int, limit: int
    ) -> list[MetricRecord]:
        with self.db.read() as session:
            return JobRuntimeRepository(session).metric_history(
                tenant_id, job_id, name=name, after_id=after_id, limit=limit
            )


def job_decorations(job: JobRecord, extras: JobExtras) -> dict[str, Any]:
    """The fields the runtime adds to ``job``'s wire form: status history, attempt and (while
    pending) reason and queue position. Given to the wire model's constructor, so a job is
    built once, not built and then copied."""
    history = [StatusTransition(status=JobStatus.PENDING, at=job.created_at, reason="submitted")]
    history += [
        StatusTransition(status=e.status, at=e.created_at, reason=e.reason, attempt=e.attempt)
        for e in extras.events
    ]
    if history[-1].status is not job.status:  # e.g. cancelled through the API while pending
        at = job.completed_at or job.started_at or job.created_at
        history.append(StatusTransition(status=job.status, at=at, reason=job.error_message))
    runtime = extras.runtime
    pending = job.status is JobStatus.PENDING
    return {
        "status_history": history,
        "attempt": runtime.attempt if runtime and runtime.attempt else None,
        "pending_reason": (
            (runtime.pending_reason if runtime else None) or "queued: waiting for the scheduler"
        )
        if pending
        else None,
        "queue_position": (runtime.queue_position if runtime else None) if pending else None,
    }
