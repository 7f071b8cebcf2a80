"""The scheduler: turns pending jobs into running ones, watches them, records how they end.

- **One scheduler** across API replicas: a lease row (``scheduler_leases``) renewed by its
  own task every third of the lease, apart from the tick, so a slow start (a Ray head that
  asks to be retried later) never lets the lease lapse under a job that is starting; only
  its holder starts jobs. A replica that takes over runs recovery first.
- **Admission**: a job starts when the node's free capacity (CPU cores, memory, GPUs) covers
  its ``compute`` request and its tenant runs fewer than ``tenant_max_concurrent_jobs``.
  FIFO within a tenant (its oldest job goes first; a head that does not fit blocks the
  tenant, so big jobs are not starved), fair across tenants (the tenant running the fewest
  jobs is served first). A request larger than the whole node is *unschedulable*: it waits
  with that reason and blocks no one.
- **Fit to the node** (``fit_to_node``, local executor): a CPU or memory request larger than
  the whole node is capped at the node's capacity, so it runs when the node is free instead
  of waiting forever; the spec keeps what was submitted, the status history and the log say
  what the job got. GPUs are never fitted: more GPUs than the node has stays unschedulable.
- **Transitions** are compare-and-set in SQL and recorded in the status history with a reason.
- **Retries**: a failed attempt with retries left goes back to ``pending`` after a backoff
  (``job_retry_backoff_seconds`` doubling per attempt, capped at 300 s); each attempt is
  visible in the history and the log.
- **Why pending**: each pending job's reason and queue position, written only when they
  change. The leader keeps the pending queue in memory (``jobs.pending_queue``) and a tick
  reads only what changed, so a submit costs the same with 10,000 jobs queued as with none.
- **Recovery** (start-up or take-over): every ``running`` job not watched here is handed to
  the executor's ``recover``: re-adopted, or failed with a clear reason (or retried).
- **No orphans**: the transition to ``running`` stores a *starting claim* as the handle
  (``{"state": "starting", "attempt": N}``) before the executor can start anything; the
  executor's handle replaces it once ``start`` returns. A server that dies in between leaves
  the claim, and recovery hands it to ``recover``, which finds the attempt by its job id and
  attempt (the local executor tags the process with ``ML_PLATFORM_RUN_ID``) and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ml_platform.core.errors import Conflict, NotFound, PlatformError
from ml_platform.core.ids import new_id
from ml_platform.core.jobs import JobStatus
from ml_platform.governance.quotas import QuotaLimits, QuotaService
from ml_platform.jobs.code_packages import CodePackageStore
from ml_platform.jobs.executors.base import Executor, JobLaunch, JobOutcome
from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.paths import PathPolicy
from ml_platform.jobs.pending_queue import (
    RECHECK_SECONDS,
    PendingInfo,
    PendingQueue,
    Queued,
    Ranker,
)
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRepository, RuntimeRecord
from ml_platform.store.jobs import transition_job
from ml_platform.store.records import JobRecord

logger = logging.getLogger(__name__)

LEASE_NAME = "job-scheduler"
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Capacity:
    cpu_cores: float
    memory_gb: float
    gpus: int

    def fits(self, other: Capacity) -> bool:
        return (
            other.cpu_cores <= self.cpu_cores
            and other.memory_gb <= self.memory_gb
            and other.gpus <= self.gpus
        )

    def plus(self, other: Capacity) -> Capacity:
        return Capacity(
            self.cpu_cores + other.cpu_cores,
            self.memory_gb + other.memory_gb,
            self.gpus + other.gpus,
        )

    def minus(self, other: Capacity) -> Capacity:
        return Capacity(
            self.cpu_cores - other.cpu_cores,
            self.memory_gb - other.memory_gb,
            self.gpus - other.gpus,
        )


def job_request(spec: dict[str, Any]) -> Capacity:
    compute = spec.get("compute") or {}
    return Capacity(
        cpu_cores=float(compute.get("cpu_cores") or 0),
        memory_gb=float(compute.get("memory_gb") or 0),
        gpus=int(compute.get("gpu_count") or 0),
    )


def starting_claim(attempt: int) -> dict[str, Any]:
    """The handle stored before the executor starts an attempt (replaced by its own)."""
    return {"state": "starting", "attempt": attempt}


def _plural(count: float, noun: str) -> str:
    value = f"{count:g}"
    return f"{value} {noun}" if count == 1 else f"{value} {noun}s"


def _mem(value: float) -> str:
    return f"{value:g} GB"


def fitted(request: Capacity, node: Capacity) -> Capacity:
    """``request`` with CPU and memory capped at the node's (GPUs are never fitted)."""
    return Capacity(
        cpu_cores=min(request.cpu_cores, node.cpu_cores),
        memory_gb=min(request.memory_gb, node.memory_gb),
        gpus=request.gpus,
    )


def fit_note(request: Capacity, node: Capacity) -> str | None:
    """The sentence recorded when a request is fitted to the node; None when it fits as is."""
    got = fitted(request, node)
    if got == request:
        return None
    return (
        f"requested {request.cpu_cores:g} CPU / {_mem(request.memory_gb)}; this node has "
        f"{node.cpu_cores:g} CPU / {_mem(node.memory_gb)}: running with "
        f"{got.cpu_cores:g} CPU / {_mem(got.memory_gb)}"
    )


def unschedulable_reason(request: Capacity, node: Capacity) -> str | None:
    if request.gpus > node.gpus:
        return (
            f"waiting for {_plural(request.gpus, 'GPU')}: this platform has "
            f"{node.gpus:g} (unschedulable)"
        )
    if request.cpu_cores > node.cpu_cores:
        return (
            f"waiting for {_plural(request.cpu_cores, 'CPU core')}: this platform has "
            f"{node.cpu_cores:g} (unschedulable)"
        )
    if request.memory_gb > node.memory_gb:
        return (
            f"waiting for {request.memory_gb:g} GB of memory: this platform has "
            f"{node.memory_gb:g} GB (unschedulable)"
        )
    return None


def quota_never_fits(request: Capacity, quota: QuotaLimits) -> str | None:
    """Why a job can never start under its tenant's quota (it waits and blocks no one)."""
    asks = (
        (quota.max_gpus, request.gpus, "GPUs", "max_gpus"),
        (quota.max_cpu_cores, request.cpu_cores, "CPU cores", "max_cpu_cores"),
        (quota.max_memory_gb, request.memory_gb, "GB memory", "max_memory_gb"),
    )
    for limit, need, noun, name in asks:
        if limit is not None and need > limit:
            return (
                f"tenant quota: needs {need:g} {noun}, more than the tenant's {name} of "
                f"{limit:g}; waits until an administrator raises it"
            )
    return None


def quota_reason(request: Capacity, holding: Capacity, quota: QuotaLimits) -> str | None:
    """Why a job waits for its tenant's running jobs to release GPUs, CPU or memory."""
    asks = (
        (quota.max_gpus, holding.gpus, request.gpus, "GPUs"),
        (quota.max_cpu_cores, holding.cpu_cores, request.cpu_cores, "CPU cores"),
        (quota.max_memory_gb, holding.memory_gb, request.memory_gb, "GB memory"),
    )
    for limit, used, need, noun in asks:
        if limit is not None and need > 0 and used + need > limit:
            return f"tenant quota: {used:g} of {limit:g} {noun} in use (this job needs {need:g})"
    return None


def capacity_reason(request: Capacity, free: Capacity) -> str:
    parts = []
    if request.cpu_cores > free.cpu_cores:
        parts.append(f"{request.cpu_cores:g} CPU cores ({max(free.cpu_cores, 0):g} free)")
    if request.memory_gb > free.memory_gb:
        parts.append(f"{request.memory_gb:g} GB memory ({max(free.memory_gb, 0):g} GB free)")
    if request.gpus > free.gpus:
        parts.append(f"{request.gpus} GPUs ({max(free.gpus, 0)} free)")
    return "waiting for capacity: needs " + ", ".join(parts)


class _LeaseLost(Exception):
    """This process no longer holds the scheduler lease (raised to roll a start back)."""


@dataclass
class _Active:
    job_id: str
    tenant_id: str
    attempt: int
    max_retries: int
    task: asyncio.Task[None] | None = None
    cancelling: bool = False
    # its own outcome is being written: a terminal status read meanwhile is that outcome,
    # not a cancellation to act on
    finishing: bool = False


class Scheduler:
    def __init__(
        self,
        *,
        db: Database,
        executor: Executor,
        logs: LogStore,
        packages: CodePackageStore,
        paths: PathPolicy,
        capacity: Capacity,
        tenant_max_concurrent_jobs: int,
        interval_seconds: float = 0.5,
        retry_backoff_seconds: float = 5.0,
        lease_seconds: float = 15.0,
        on_change: Callable[[str, bool], None] | None = None,
        fit_to_node: bool = False,
        quotas: QuotaService | None = None,
    ) -> None:
        self._db = db
        self._executor = executor
        self._logs = logs
        self._packages = packages
        self._paths = paths
        self._capacity = capacity
        self._fit_to_node = fit_to_node
        self._tenant_limit = tenant_max_concurrent_jobs  # without ``quotas``: every tenant's
        self._quotas = quotas  # per-tenant delay limits (running jobs, GPUs, CPU, memory)
        self._interval = interval_seconds
        self._backoff = retry_backoff_seconds
        self._lease_seconds = lease_seconds
        # (job id, final?): final when the job reached a terminal status (its logs are done)
        self._on_change = on_change or (lambda _job_id, _final: None)
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{new_id('sch')}"
        self._active: dict[str, _Active] = {}
        self._leader = False
        self._recovered = False  # recovery ran since this process last took the lease
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._pending_info: dict[str, PendingInfo] = {}  # what the job_runtime rows say
        self._queue = PendingQueue()  # the pending jobs, read incrementally
        self._ranker = Ranker()
        self._checked_at = 0.0  # time.monotonic() the queue was last compared with the store
        self._background: set[asyncio.Task[None]] = set()
        # observation hooks (the API's /metrics sets them; the domain knows no metrics library)
        self.on_cycle: Callable[[], None] = lambda: None
        self.on_job_started: Callable[[float], None] = lambda _queue_wait_seconds: None

    @property
    def capacity(self) -> Capacity:
        return self._capacity

    @property
    def is_leader(self) -> bool:
        return self._leader

    def request_of(self, spec: dict[str, Any]) -> Capacity:
        """What a job gets on this node: its request, fitted to the node when enabled."""
        request = job_request(spec)
        if self._fit_to_node and request.gpus <= self._capacity.gpus:
            return fitted(request, self._capacity)
        return request

    def _fit_note(self, spec: dict[str, Any]) -> str | None:
        request = job_request(spec)
        if self.request_of(spec) == request:
            return None
        return fit_note(request, self._capacity)

    def tenant_of(self, job_id: str) -> str | None:
        active = self._active.get(job_id)
        return active.tenant_id if active else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="job-scheduler")

    async def stop(self, *, stop_jobs: bool = True) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if stop_jobs:
            await self._executor.aclose()
            tasks = [a.task for a in self._active.values() if a.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        if self._leader:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release)

    def wake(self) -> None:
        """Ask for a tick now; callable from any thread."""
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)

    async def _run(self) -> None:
        assert self._wake is not None
        keeper = asyncio.create_task(self._keep_lease(), name="scheduler-lease")
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("scheduler tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self) -> None:
        """Take or renew the lease every third of its length, whatever the tick is doing."""
        period = max(self._lease_seconds / 3, 0.05)
        while not self._stopping:
            try:
                await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("renewing the scheduler lease failed")
                self._leader = False
            await asyncio.sleep(period)

    async def _renew(self) -> None:
        leader = await asyncio.to_thread(self._acquire)
        if leader and not self._leader:
            logger.info("this process holds the scheduler lease (%s)", self._holder)
            self._recovered = False
            self._queue.stale = True  # another holder may have changed anything meanwhile
            if self._wake is not None:
                self._wake.set()  # recover and dispatch now rather than at the next interval
        elif self._leader and not leader:
            logger.warning("scheduler lease lost; another replica schedules now")
        self._leader = leader

    async def tick(self) -> None:
        if not self._leader:
            return
        if not self._recovered:
            self._recovered = True
            await self._recover()
        await self._check_cancellations()
        await self._dispatch()
        self.on_cycle()

    # -- database helpers (run in threads) ------------------------------------------------------

    def _acquire(self) -> bool:
        with self._db.transaction() as session:
            return JobRuntimeRepository(session).acquire_lease(
                LEASE_NAME, self._holder, self._lease_seconds
            )

    def _release(self) -> None:
        with self._db.transaction() as session:
            JobRuntimeRepository(session).release_lease(LEASE_NAME, self._holder)

    def _running(self) -> list[tuple[JobRecord, RuntimeRecord | None]]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).jobs_with_status(JobStatus.RUNNING)

    def _read_all_pending(self) -> list[tuple[JobRecord, RuntimeRecord | None]]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).jobs_with_status(JobStatus.PENDING)

    def _read_new_pending(
        self, since: datetime | None
    ) -> tuple[int, list[tuple[JobRecord, RuntimeRecord | None]]]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).pending_delta(since)

    def _pending_ids(self) -> set[str]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).pending_ids()

    def _pending_jobs(self, job_ids: set[str]) -> list[tuple[JobRecord, RuntimeRecord | None]]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).pending_jobs(job_ids)

    async def _refresh_queue(self) -> None:
        """Bring the in-memory queue up to date: every pending row only after taking the
        lease; else the new jobs, and the ids compared when the count says more changed."""
        if self._queue.stale:
            rows = await asyncio.to_thread(self._read_all_pending)
            self._queue.reset(rows)
            self._ranker.reset()
            self._checked_at = time.monotonic()
            self._pending_info = {
                job.id: (job.tenant_id, runtime.pending_reason, runtime.queue_position)
                for job, runtime in rows
                if runtime is not None and runtime.pending_reason is not None
            }
            return
        pending, rows = await asyncio.to_thread(self._read_new_pending, self._queue.newest)
        for job, runtime in rows:
            self._queue.add(job, runtime)
        due = self._queue.recheck or time.monotonic() - self._checked_at > RECHECK_SECONDS
        if self._queue.holds(pending) and not due:
            return
        # a pending job left or came back in a way the new rows cannot show: compare ids
        self._queue.recheck = False
        gone, unknown = self._queue.sync(await asyncio.to_thread(self._pending_ids))
        for job_id in gone:
            self._pending_info.pop(job_id, None)
        if unknown:
            for job, runtime in await asyncio.to_thread(self._pending_jobs, unknown):
                self._queue.add(job, runtime)
        self._checked_at = time.monotonic()

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self) -> None:
        running = await asyncio.to_thread(self._running)
        for job, runtime in running:
            if job.id in self._active:
                continue
            attempt = runtime.attempt if runtime else 1
            active = _Active(job.id, job.tenant_id, attempt, int(job.spec.get("max_retries") or 0))
            if runtime is None or (runtime.handle is None and runtime.executor is None):
                outcome: JobOutcome | None = JobOutcome(
                    JobStatus.FAILED,
                    "the server stopped while the job was starting; it never ran",
                )
            elif runtime.executor != self._executor.name:
                outcome = JobOutcome(
                    JobStatus.FAILED,
                    f"the job ran on the {runtime.executor!r} executor, which this server "
                    f"no longer uses ({self._executor.name!r})",
                )
            else:
                # A starting claim (or no handle at all, from an older server) is reconciled
                # by the executor too: it looks for the attempt by job id and attempt.
                handle = runtime.handle or starting_claim(attempt)
                try:
                    outcome = await self._executor.recover(job.id, handle)
                except Exception as exc:
                    logger.exception("recovering job %s failed", job.id)
                    outcome = JobOutcome(JobStatus.FAILED, f"could not recover the job: {exc}")
            self._active[job.id] = active
            if outcome is None:
                logger.info("re-adopted running job %s", job.id)
                active.task = asyncio.create_task(self._watch(active))
            else:
                await self._finish(active, outcome)

    # -- cancellation --------------------------------------------------------------------------

    async def _check_cancellations(self) -> None:
        candidates = [a for a in self._active.values() if not (a.cancelling or a.finishing)]
        if not candidates:
            return
        ids = [a.job_id for a in candidates]
        statuses = await asyncio.to_thread(self._statuses, ids)
        for active in candidates:
            status = statuses.get(active.job_id)
            if status is not None and status is not JobStatus.RUNNING:
                active.cancelling = True
                self._logs.append(active.job_id, f"job is {status.value}: stopping it", "system")
                task = asyncio.create_task(self._executor.cancel(active.job_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _statuses(self, ids: list[str]) -> dict[str, JobStatus]:
        with self._db.read() as session:
            return JobRuntimeRepository(session).statuses(ids)

    # -- admission -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Start what fits, write the reasons that changed. Reads the running jobs (at most
        what the node holds) and only the changes of the pending queue (``PendingQueue``);
        the admission loop visits each tenant's FIFO head(s) only."""
        running = await asyncio.to_thread(self._running)
        await self._refresh_queue()
        now = utcnow()
        free = self._capacity
        running_per_tenant: dict[str, int] = {}
        held: dict[str, Capacity] = {}  # what each tenant's running jobs hold
        for job, _ in running:
            request = self.request_of(job.spec)
            free = free.minus(request)
            running_per_tenant[job.tenant_id] = running_per_tenant.get(job.tenant_id, 0) + 1
            held[job.tenant_id] = held.get(job.tenant_id, Capacity(0, 0, 0)).plus(request)
        self._queue.release_due(now)
        queues = self._queue.queues
        # each waiting tenant's quota, read once for this pass
        limits = await asyncio.to_thread(self._tenant_limits, set(queues))

        info: dict[str, PendingInfo] = {}
        for item in self._queue.delayed.values():
            assert item.runtime is not None and item.runtime.not_before is not None
            when = item.runtime.not_before.isoformat(timespec="seconds").replace("+00:00", "Z")
            info[item.job.id] = (
                item.job.tenant_id,
                f"retrying after a failed attempt: attempt {item.runtime.attempt + 1} starts "
                f"at {when}",
                None,
            )

        to_start: list[Queued] = []
        blocked: dict[str, str] = {}
        cursor = dict.fromkeys(queues, 0)  # each tenant's head: jobs before it start or wait
        while True:
            open_tenants = [t for t, q in queues.items() if cursor[t] < len(q) and t not in blocked]
            if not open_tenants:
                break
            tenant = min(
                open_tenants,
                key=lambda t: (running_per_tenant.get(t, 0), queues[t][cursor[t]].job.created_at),
            )
            item = queues[tenant][cursor[tenant]]
            job = item.job
            request = self.request_of(job.spec)
            reason = unschedulable_reason(request, self._capacity)
            if reason is not None:
                cursor[tenant] += 1
                info[job.id] = (tenant, reason, None)
                continue
            count = running_per_tenant.get(tenant, 0)
            quota = limits[tenant]
            holding = held.get(tenant, Capacity(0, 0, 0))
            never = quota_never_fits(request, quota)
            if never is not None:
                cursor[tenant] += 1
                info[job.id] = (tenant, never, None)
                continue
            if quota.max_concurrent_jobs is not None and count >= quota.max_concurrent_jobs:
                blocked[tenant] = (
                    f"tenant quota: {count} of {quota.max_concurrent_jobs} concurrent jobs running"
                )
                continue
            over = quota_reason(request, holding, quota)
            if over is not None:
                blocked[tenant] = over
                continue
            if not free.fits(request):
                blocked[tenant] = capacity_reason(request, free)
                note = self._fit_note(job.spec)
                if note is not None:
                    blocked[tenant] += f" (fitted to this node: {note})"
                continue
            cursor[tenant] += 1
            free = free.minus(request)
            running_per_tenant[tenant] = count + 1
            held[tenant] = holding.plus(request)
            to_start.append(item)

        # Queue positions: the remaining jobs in round-robin order across tenants.
        remaining = {t: q[cursor[t] :] for t, q in queues.items() if cursor[t] < len(q)}
        info.update(self._ranker.rank(remaining, blocked))
        for item in to_start:  # each leaves pending: started, failed, or cancelled meanwhile
            self._queue.remove(item.job.id)
            self._pending_info.pop(item.job.id, None)

        changed = {k: v for k, v in info.items() if self._pending_info.get(k) != v}
        if changed:
            await asyncio.to_thread(self._write_pending_info, changed)
            for job_id in changed:
                self._on_change(job_id, False)
        self._pending_info.update(changed)
        for item in to_start:
            await self._start(item.job, item.runtime)

    def _tenant_limits(self, tenants: set[str]) -> dict[str, QuotaLimits]:
        if self._quotas is None:
            return {t: QuotaLimits(max_concurrent_jobs=self._tenant_limit) for t in tenants}
        return self._quotas.limits_for(tenants)

    def _write_pending_info(self, info: dict[str, PendingInfo]) -> None:
        with self._db.transaction() as session:
            JobRuntimeRepository(session).set_pending_info(info)

    # -- starting and finishing -------------------------------------------------------------------

    async def _start(self, job: JobRecord, runtime: RuntimeRecord | None) -> None:
        attempt = (runtime.attempt if runtime else 0) + 1
        active = _Active(job.id, job.tenant_id, attempt, int(job.spec.get("max_retries") or 0))
        try:
            launch = await asyncio.to_thread(self._launch_for, job, attempt)
        except PlatformError as exc:
            started = await asyncio.to_thread(self._mark_running, job, attempt)
            if started:
                self._active[job.id] = active
                await self._finish(active, JobOutcome(JobStatus.FAILED, str(exc)), retry=False)
            return
        if not await asyncio.to_thread(self._mark_running, job, attempt):
            return  # cancelled (or taken) in the meantime
        note = self._fit_note(job.spec)
        if note is not None:
            self._logs.append(job.id, f"fitted to this node: {note}", "system")
        self._active[job.id] = active
        self._pending_info.pop(job.id, None)
        self._on_change(job.id, False)
        try:
            handle = await self._executor.start(launch)
        except Exception as exc:
            logger.exception("executor failed to start job %s", job.id)
            await self._finish(active, JobOutcome(JobStatus.FAILED, f"could not start: {exc}"))
            return
        try:
            await asyncio.to_thread(self._save_handle, job, handle)
        except _LeaseLost:
            # The new holder's recovery owns the starting claim: stop what was started here.
            logger.warning("scheduler lease lost while job %s started: stopping it", job.id)
            self._leader = False
            self._active.pop(job.id, None)
            await self._executor.cancel(job.id)
            return
        except Exception:
            # The starting claim stays; watch anyway (recovery would reconcile the claim).
            logger.exception("saving the executor handle of job %s failed", job.id)
        active.task = asyncio.create_task(self._watch(active), name=f"watch-{job.id}")

    def _launch_for(self, job: JobRecord, attempt: int) -> JobLaunch:
        spec = job.spec
        data = self._paths.check_data_path(job.tenant_id, spec["data_path"])
        output = self._paths.check_output_path(job.tenant_id, spec["output_path"])
        code_dir = None
        if spec.get("source"):
            code_dir = self._packages.tree(job.tenant_id, spec["source"])
        with self._db.read() as session:
            env_vars = JobRuntimeRepository(session).env_vars(job.id)
        request = self.request_of(spec)
        return JobLaunch(
            job_id=job.id,
            tenant_id=job.tenant_id,
            entrypoint=spec.get("entrypoint") or "python train.py",
            data_path=data.uri,
            output_path=output.uri,
            attempt=attempt,
            code_dir=code_dir,
            hyperparameters=spec.get("hyperparameters") or {},
            env_vars=env_vars,
            docker_image=spec.get("docker_image"),
            cpu_cores=request.cpu_cores,
            memory_gb=request.memory_gb or None,
            gpu_count=request.gpus,
            max_runtime_seconds=spec.get("max_runtime_seconds"),
        )

    def _mark_running(self, job: JobRecord, attempt: int) -> bool:
        """pending -> running with a starting claim, in one transaction that also checks this
        process still holds the lease (fencing): a holder whose lease was taken over starts
        nothing, so no job is started by two holders."""
        now = utcnow()
        try:
            with self._db.transaction() as session:
                if not self._claim(session, job, attempt):
                    return False
        except _LeaseLost:
            logger.warning("scheduler lease lost: job %s is left to the new holder", job.id)
            self._leader = False
            return False
        if attempt == 1:  # first start: time since submission; retries wait a backoff
            self.on_job_started((now - job.created_at).total_seconds())
        return True

    def _claim(self, session: Session, job: JobRecord, attempt: int) -> bool:
        now = utcnow()
        repo = JobRuntimeRepository(session)
        fields: dict[str, Any] = {"error_message": None}
        if job.started_at is None:
            fields["started_at"] = now
        reason = f"attempt {attempt} started on the {self._executor.name} executor"
        note = self._fit_note(job.spec)
        if note is not None:
            reason += f"; fitted to this node: {note}"
        if not _transition(
            session,
            job.id,
            job.tenant_id,
            JobStatus.RUNNING,
            expected=[JobStatus.PENDING],
            reason=reason,
            attempt=attempt,
            **fields,
        ):
            return False
        repo.upsert_runtime(
            job.id,
            job.tenant_id,
            attempt=attempt,
            executor=self._executor.name,
            handle=starting_claim(attempt),
            not_before=None,
            pending_reason=None,
            queue_position=None,
        )
        if not repo.holds_lease(LEASE_NAME, self._holder):
            raise _LeaseLost  # rolls the transition back
        return True

    def _save_handle(self, job: JobRecord, handle: dict[str, Any]) -> None:
        """Store the executor's handle over the starting claim, fenced by the lease like the
        start: after a take-over the new holder's recovery owns the claim."""
        with self._db.transaction() as session:
            repo = JobRuntimeRepository(session)
            if not repo.holds_lease(LEASE_NAME, self._holder):
                raise _LeaseLost
            repo.upsert_runtime(job.id, job.tenant_id, handle=handle)

    async def _watch(self, active: _Active) -> None:
        try:
            outcome = await self._executor.wait(active.job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("watching job %s failed", active.job_id)
            outcome = JobOutcome(JobStatus.FAILED, f"lost track of the job: {exc}")
        await self._finish(active, outcome)

    async def _finish(self, active: _Active, outcome: JobOutcome, *, retry: bool = True) -> None:
        active.finishing = True
        try:
            retried = await asyncio.to_thread(self._record_outcome, active, outcome, retry)
        except Exception:
            logger.exception("recording the outcome of job %s failed", active.job_id)
            retried = None
        self._active.pop(active.job_id, None)
        self._logs.notify(active.job_id)
        self._on_change(active.job_id, retried is None)  # re-queued for a retry: not final
        if retried is not None:
            self._queue.recheck = True  # back in the queue (committed), with its backoff
        if retried is not None and self._loop is not None:
            self._loop.call_later(retried + 0.01, self.wake)
        self.wake()

    def _record_outcome(self, active: _Active, outcome: JobOutcome, retry: bool) -> float | None:
        """Write the outcome; return the backoff when the job was re-queued for a retry."""
        now = utcnow()
        with self._db.transaction() as session:
            repo = JobRuntimeRepository(session)
            if (
                retry
                and outcome.status is JobStatus.FAILED
                and active.attempt <= active.max_retries
            ):
                backoff = float(
                    min(self._backoff * 2.0 ** (active.attempt - 1), MAX_BACKOFF_SECONDS)
                )
                reason = (
                    f"attempt {active.attempt} failed ({outcome.error_message}); retry "
                    f"{active.attempt} of {active.max_retries} in {backoff:g}s"
                )
                if _transition(
                    session,
                    active.job_id,
                    active.tenant_id,
                    JobStatus.PENDING,
                    expected=[JobStatus.RUNNING],
                    reason=reason,
                    attempt=active.attempt,
                    error_message=outcome.error_message,
                    resource_usage=outcome.resource_usage or None,
                ):
                    repo.upsert_runtime(
                        active.job_id,
                        active.tenant_id,
                        not_before=now + timedelta(seconds=backoff),
                        handle=None,
                    )
                    self._logs.append(active.job_id, reason, "system")
                    return backoff
            fields: dict[str, Any] = {
                "completed_at": now,
                "resource_usage": outcome.resource_usage or None,
            }
            if outcome.status is not JobStatus.SUCCEEDED:
                fields["error_message"] = outcome.error_message
            if not _transition(
                session,
                active.job_id,
                active.tenant_id,
                outcome.status,
                expected=[JobStatus.RUNNING],
                attempt=active.attempt,
                reason=outcome.error_message or "the job's code exited 0",
                **fields,
            ):
                # Already final (cancelled through the API, whose event is recorded): keep
                # that outcome, add what the process used.
                current = repo.statuses([active.job_id]).get(active.job_id)
                if current is not None and current.is_terminal:
                    repo.update_terminal(
                        active.job_id, current, resource_usage=outcome.resource_usage or None
                    )
        return None


def _transition(
    session: Session,
    job_id: str,
    tenant_id: str,
    target: JobStatus,
    *,
    expected: list[JobStatus],
    reason: str,
    attempt: int,
    **fields: Any,
) -> bool:
    """``transition_job``; False when the job moved on meanwhile (or is gone)."""
    try:
        transition_job(
            session,
            job_id,
            tenant_id=tenant_id,
            target=target,
            expected=expected,
            reason=reason,
            attempt=attempt,
            **fields,
        )
    except (Conflict, NotFound):
        return False
    return True
