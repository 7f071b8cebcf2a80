"""The Ray executor: jobs go through Ray's Job Submission API.

- ``submission_id`` is our job id (``<job id>-a<N>`` for retry attempts), so re-submitting
  after a crash never starts a second copy: Ray refuses the duplicate and we adopt the first.
- ``runtime_env``: the code package as ``working_dir`` (Ray uploads it to the cluster), the
  job's ``env_vars`` plus the ``ML_PLATFORM_*`` contract, and ``py_modules`` carrying
  ``ml_platform.runtime`` (pure standard library) so scripts can import it on any node.
  ``docker_image`` is passed on as ``runtime_env["image_uri"]`` when the executor is built
  with ``use_image_uri=True`` (Ray then runs the job in that container: the cluster needs
  podman); otherwise it is recorded and the log says the cluster's Python environment runs
  the job.
- ``entrypoint_num_cpus`` / ``entrypoint_num_gpus`` / ``entrypoint_memory`` come from the
  spec's ``compute``.
- Logs: Ray merges stdout and stderr; each line is stored with the stream ``output``.
  Metrics travel in that same stream as lines prefixed by a per-job secret tag
  (``ML_PLATFORM_METRICS_TAG``): they are removed from the log and parsed as metrics, and a
  script cannot forge one by accident.
- Outputs: with a remote storage (``ML_PLATFORM_STORAGE_URI=s3://...``) and an
  ``output_path`` in it, the entrypoint runs under ``ml_platform.runtime._publish``, which
  gives it a local ``ML_PLATFORM_OUTPUT_DIR`` on the worker and puts the files under
  ``output_path`` when it exits 0; the data is read from the storage through
  ``runtime.open_data``; the workers need network access to the object store only. Ray
  shows a job's runtime_env to anyone with dashboard access, so only the storage's
  non-secret fsspec options travel in ``ML_PLATFORM_STORAGE_OPTIONS`` (endpoint, region,
  flags: ``storage_options.public_storage_options``); the workers take credentials from
  their own environment (``AWS_*`` variables, an instance role). ``pass_storage_secrets``
  (``ML_PLATFORM_RAY_PASS_STORAGE_SECRETS``, off by default) sends them all, as before.
  Otherwise ``ML_PLATFORM_OUTPUT_DIR`` is a directory under the
  platform's data dir, copied to ``output_path`` on success, which needs a filesystem shared
  with the Ray workers (true for a local head).
- Status: PENDING/RUNNING -> running; SUCCEEDED -> succeeded; FAILED -> failed (Ray's message
  plus the last output lines); STOPPED -> cancelled when we stopped it. The status is polled
  every 50 ms at first, then every 2% of the job's age up to ``poll_interval`` (the end is
  noticed within ~2% of the run time; the read is ``get_job_info``, which carries the status
  and the exit code at once); when Ray reports the end, the log
  stream (which Ray closes only seconds later) is stopped and one ``get_job_logs`` read
  stores the lines it had not delivered, so the job finishes when Ray's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shlex
import shutil
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ml_platform.core.jobs import JobStatus
from ml_platform.jobs.executors._files import copy_outputs
from ml_platform.jobs.executors.base import JobLaunch, JobOutcome
from ml_platform.jobs.executors.storage_options import public_storage_options
from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.metrics import MetricsSink, parse_metric_record
from ml_platform.storage import Storage

try:
    from ray.job_submission import JobStatus as RayStatus
    from ray.job_submission import JobSubmissionClient
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the Ray executor needs Ray: install ml-platform[ray]") from exc

logger = logging.getLogger(__name__)

_RUNTIME_PACKAGE = Path(__file__).resolve().parents[2] / "runtime"
TAIL_LINES = 20
FIRST_POLL_SECONDS = 0.05
POLL_FRACTION = 0.02  # of the job's age: a 3 s job is polled every 60 ms, a 25 s one every 0.5
LOG_READ_SECONDS = 5.0
_TERMINAL = {RayStatus.SUCCEEDED, RayStatus.FAILED, RayStatus.STOPPED}


# How long a submission waits for a Ray head that has no job agent yet (starting, restarting).
SUBMIT_RETRY_SECONDS = 60.0


def _ray_says_later(exc: Exception) -> bool:
    """Ray cannot take jobs *yet*: its head (re)starts, or its dashboard did not answer."""
    if isinstance(exc, ConnectionError):  # "Failed to connect to Ray at address ..."
        return True
    if isinstance(exc, requests.ConnectionError):  # "Connection aborted": a head under load
        return True  # safe to resend: the submission id is fixed, a duplicate is adopted
    message = str(exc).lower()
    return "no available agent" in message or "try again later" in message


@dataclass
class _RayRun:
    job_id: str
    submission_id: str
    output_dir: Path
    output_path: str
    tag: str
    max_runtime_seconds: float | None
    started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    timed_out: bool = False
    skip_lines: int = 0
    lines_seen: int = 0  # complete lines taken off Ray's log stream (skipped ones included)
    consuming: asyncio.Task[None] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    outcome: asyncio.Future[JobOutcome] | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def poll_delay(elapsed: float, poll_interval: float) -> float:
    """The pause before the next status read of a job running for ``elapsed`` seconds: a
    fixed fraction of its age (so the end is noticed within ~``POLL_FRACTION`` of the run
    time), at least ``FIRST_POLL_SECONDS`` and at most ``poll_interval``."""
    return min(poll_interval, max(FIRST_POLL_SECONDS, elapsed * POLL_FRACTION))


def submission_id_for(job_id: str, attempt: int) -> str:
    """The Ray submission id of a job's attempt: deterministic, so a restart can find it."""
    return job_id if attempt == 1 else f"{job_id}-a{attempt}"


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        *,
        address: str,
        jobs_dir: Path,
        logs: LogStore,
        on_metrics: MetricsSink,
        poll_interval: float = 0.5,
        use_image_uri: bool = False,
        storage: Storage | None = None,
        pass_storage_secrets: bool = False,
    ) -> None:
        """``storage``: the platform's remote storage. A job whose ``output_path`` is in it
        publishes its outputs there itself (``ml_platform.runtime._publish``) and reads its
        ``data_path`` from it: the Ray workers need the object store, no shared disk.
        ``pass_storage_secrets``: give the job the storage's credentials too (visible in
        Ray's dashboard); by default only its non-secret options travel."""
        self._storage = storage
        self._pass_storage_secrets = pass_storage_secrets
        self._address = address
        self._jobs_dir = jobs_dir
        self._logs = logs
        self._on_metrics = on_metrics
        self._poll = poll_interval
        self._use_image_uri = use_image_uri
        self._client: JobSubmissionClient | None = None
        self._runs: dict[str, _RayRun] = {}

    async def _ray(self) -> JobSubmissionClient:
        if self._client is None:
            self._client = await asyncio.to_thread(JobSubmissionClient, self._address)
        return self._client

    # -- Executor ---------------------------------------------------------------------------------

    async def start(self, launch: JobLaunch) -> dict[str, Any]:
        submission_id = submission_id_for(launch.job_id, launch.attempt)
        job_dir = self._logs.path(launch.job_id).parent
        output_dir = job_dir / f"ray-output-{launch.attempt}"
        tag = "mlp-metric-" + secrets.token_hex(16)
        run = _RayRun(
            job_id=launch.job_id,
            submission_id=submission_id,
            output_dir=output_dir,
            output_path=launch.output_path,
            tag=tag,
            max_runtime_seconds=launch.max_runtime_seconds,
        )
        run.outcome = asyncio.get_running_loop().create_future()
        self._runs[launch.job_id] = run
        handle = {
            "executor": self.name,
            "attempt": launch.attempt,
            "submission_id": submission_id,
            "output_dir": str(output_dir),
            "output_path": launch.output_path,
            "tag": tag,
            "max_runtime_seconds": launch.max_runtime_seconds,
        }
        try:
            await asyncio.to_thread(self._prepare, launch, run)
            runtime_env = self._runtime_env(launch, run)
            self._logs.append(
                launch.job_id,
                f"attempt {launch.attempt}: submitting to Ray at {self._address} as "
                f"{submission_id!r}: {launch.entrypoint}",
            )
            if launch.docker_image and "image_uri" not in runtime_env:
                self._logs.append(
                    launch.job_id,
                    f"docker_image {launch.docker_image!r} is recorded; the Ray cluster's Python "
                    "environment runs the job",
                )
            try:
                await self._submit(
                    launch.job_id,
                    entrypoint=self._entrypoint(launch),
                    submission_id=submission_id,
                    runtime_env=runtime_env,
                    metadata={"ml_platform_job_id": launch.job_id, "tenant_id": launch.tenant_id},
                    entrypoint_num_cpus=launch.cpu_cores or None,
                    entrypoint_num_gpus=launch.gpu_count or None,
                    entrypoint_memory=(
                        int(launch.memory_gb * 1024**3) if launch.memory_gb else None
                    ),
                )
            except RuntimeError as exc:
                if "already exists" not in str(exc):
                    raise
                self._logs.append(
                    launch.job_id, f"{submission_id!r} was already submitted: adopting it"
                )
        except Exception as exc:
            message = f"could not submit the job to Ray: {exc}"
            self._logs.append(launch.job_id, message)
            run.outcome.set_result(JobOutcome(JobStatus.FAILED, message))
            return handle
        (job_dir / "state.json").write_text(json.dumps(handle))
        self._watch(run)
        return handle

    async def _submit(self, job_id: str, **submission: Any) -> None:
        """Connect and ``submit_job``, retried while Ray cannot take jobs *yet* (a head that is
        starting or restarting refuses connections, or has no job agent for a while and says
        "try again later"); any other refusal is final."""
        deadline = time.monotonic() + SUBMIT_RETRY_SECONDS
        delay = 0.5
        while True:
            try:
                client = await self._ray()
                await asyncio.to_thread(client.submit_job, **submission)
                return
            except (RuntimeError, ConnectionError, requests.ConnectionError) as exc:
                if not _ray_says_later(exc) or time.monotonic() + delay > deadline:
                    raise
                self._logs.append(job_id, f"Ray is not ready for jobs yet ({exc}); retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def wait(self, job_id: str) -> JobOutcome:
        run = self._runs.get(job_id)
        if run is None or run.outcome is None:
            raise KeyError(f"job {job_id} is not watched by this executor")
        try:
            return await asyncio.shield(run.outcome)
        finally:
            if run.outcome.done():
                self._runs.pop(job_id, None)

    async def cancel(self, job_id: str) -> None:
        run = self._runs.get(job_id)
        if run is None or (run.outcome is not None and run.outcome.done()):
            return
        run.cancel_requested = True
        self._logs.append(job_id, "cancel requested: stopping the Ray job")
        client = await self._ray()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.stop_job, run.submission_id)

    async def recover(self, job_id: str, handle: Mapping[str, Any]) -> JobOutcome | None:
        """Ray jobs outlive our server: re-adopt them and keep watching.

        A *starting claim* (the server stopped between claiming the attempt and saving Ray's
        answer) names no submission, but the id is deterministic: if Ray holds that
        submission it is stopped, so a retry never runs beside an orphan.
        """
        submission_id = handle.get("submission_id")
        if not submission_id and handle.get("state") == "starting":
            return await self._reconcile_starting(job_id, int(handle.get("attempt") or 1))
        if not submission_id:
            return JobOutcome(JobStatus.FAILED, "no Ray submission id was recorded for the job")
        try:
            client = await self._ray()
            await asyncio.to_thread(client.get_job_status, str(submission_id))
        except Exception as exc:
            return JobOutcome(JobStatus.FAILED, f"Ray does not know the job any more: {exc}")
        max_runtime = handle.get("max_runtime_seconds")
        run = _RayRun(
            job_id=job_id,
            submission_id=str(submission_id),
            output_dir=Path(str(handle.get("output_dir"))),
            output_path=str(handle.get("output_path")),
            tag=str(handle.get("tag")),
            max_runtime_seconds=float(max_runtime) if max_runtime else None,
        )
        # Lines already stored came from this submission: do not store them twice.
        stored = self._logs.read_after(job_id, 0)
        run.skip_lines = sum(1 for line in stored if line.stream == "output")
        run.outcome = asyncio.get_running_loop().create_future()
        self._runs[job_id] = run
        self._logs.append(job_id, f"re-adopted Ray job {submission_id!r} after a restart")
        self._watch(run)
        return None

    async def _reconcile_starting(self, job_id: str, attempt: int) -> JobOutcome:
        submission_id = submission_id_for(job_id, attempt)
        client = await self._ray()
        try:
            await asyncio.to_thread(client.get_job_status, submission_id)
        except Exception:
            return JobOutcome(
                JobStatus.FAILED, "the server stopped while the job was starting; it never ran"
            )
        with contextlib.suppress(Exception):  # already ended: nothing to stop
            await asyncio.to_thread(client.stop_job, submission_id)
        message = (
            f"the server stopped while the job was starting; its Ray submission "
            f"{submission_id!r} was stopped"
        )
        self._logs.append(job_id, message)
        return JobOutcome(JobStatus.FAILED, message)

    async def aclose(self) -> None:
        for run in list(self._runs.values()):
            for task in run.tasks:
                task.cancel()

    # -- internals --------------------------------------------------------------------------------

    def _prepare(self, launch: JobLaunch, run: _RayRun) -> None:
        if run.output_dir.exists():
            shutil.rmtree(run.output_dir)
        run.output_dir.mkdir(parents=True)
        lib = run.output_dir.parent / "ray-lib" / "ml_platform"
        if not lib.exists():
            shutil.copytree(
                _RUNTIME_PACKAGE, lib / "runtime", ignore=shutil.ignore_patterns("__pycache__")
            )
            (lib / "__init__.py").write_text("")

    def _publishes_itself(self, launch: JobLaunch) -> bool:
        storage = self._storage
        return storage is not None and storage.key_for_uri(launch.output_path) is not None

    def _entrypoint(self, launch: JobLaunch) -> str:
        if not self._publishes_itself(launch):
            return launch.entrypoint
        return f"python -m ml_platform.runtime._publish {shlex.quote(launch.entrypoint)}"

    def _runtime_env(self, launch: JobLaunch, run: _RayRun) -> dict[str, Any]:
        env_vars = {str(k): str(v) for k, v in launch.env_vars.items()}
        env_vars.update(
            {
                "PYTHONUNBUFFERED": "1",
                "ML_PLATFORM_JOB_ID": launch.job_id,
                "ML_PLATFORM_DATA_PATH": launch.data_path,
                "ML_PLATFORM_OUTPUT_DIR": str(run.output_dir),
                "ML_PLATFORM_HYPERPARAMETERS": json.dumps(dict(launch.hyperparameters)),
                "ML_PLATFORM_METRICS_TAG": run.tag,
            }
        )
        if self._publishes_itself(launch):
            assert self._storage is not None
            env_vars.pop("ML_PLATFORM_OUTPUT_DIR")  # the publisher makes one on the worker
            env_vars["ML_PLATFORM_OUTPUT_URI"] = launch.output_path
            options = self._job_storage_options()
            if options:
                env_vars["ML_PLATFORM_STORAGE_OPTIONS"] = json.dumps(options)
        runtime_env: dict[str, Any] = {
            "env_vars": env_vars,
            "py_modules": [str(run.output_dir.parent / "ray-lib" / "ml_platform")],
        }
        if launch.code_dir is not None:
            runtime_env["working_dir"] = str(launch.code_dir)
        if self._use_image_uri and launch.docker_image:
            runtime_env["image_uri"] = launch.docker_image
        return runtime_env

    def _job_storage_options(self) -> dict[str, Any]:
        """The fsspec options a job gets: without credentials unless told otherwise."""
        assert self._storage is not None
        if self._pass_storage_secrets:
            return dict(self._storage.options)
        return public_storage_options(self._storage.options)

    def _watch(self, run: _RayRun) -> None:
        pump = asyncio.create_task(self._pump_logs(run), name=f"ray-logs-{run.job_id}")
        status = asyncio.create_task(self._poll_status(run, pump), name=f"ray-{run.job_id}")
        run.tasks.extend([pump, status])

    async def _pump_logs(self, run: _RayRun) -> None:
        client = await self._ray()
        buffer = ""
        skip = run.skip_lines
        try:
            async for chunk in client.tail_job_logs(run.submission_id):
                buffer += chunk
                *complete, buffer = buffer.split("\n")
                run.lines_seen += len(complete)
                if skip:
                    dropped = min(skip, len(complete))
                    complete, skip = complete[dropped:], skip - dropped
                # shielded: stopping the pump at the job's end never half-stores a batch
                run.consuming = asyncio.ensure_future(self._consume(run, complete))
                await asyncio.shield(run.consuming)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("tailing the Ray logs of %s failed: %s", run.job_id, exc)
        if buffer and not skip:
            run.lines_seen += 1
            await self._consume(run, [buffer])

    async def _finish_logs(self, run: _RayRun, pump: asyncio.Task[None]) -> None:
        """The job ended: store the lines the stream has not delivered yet, without waiting
        for Ray to close it (seconds after the end). The stream stops; one read of the job's
        whole log (``get_job_logs``) supplies what follows the lines already taken."""
        if not pump.done():
            pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        if run.consuming is not None:
            with contextlib.suppress(Exception):
                await run.consuming
        client = await self._ray()
        try:
            text = await asyncio.wait_for(
                asyncio.to_thread(client.get_job_logs, run.submission_id), LOG_READ_SECONDS
            )
        except Exception as exc:
            logger.warning("reading the final Ray logs of %s failed: %s", run.job_id, exc)
            return
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        rest = lines[run.lines_seen :]
        rest = rest[max(0, run.skip_lines - run.lines_seen) :]
        run.lines_seen = len(lines)
        if rest:
            await self._consume(run, rest)

    async def _consume(self, run: _RayRun, lines: list[str]) -> None:
        """Store a batch of lines: the metrics records first, then the output lines. A
        reader who sees a log line (``epoch 2: ...``) can then read every metric the job
        recorded before it, even when the batch holds both."""
        output: list[str] = []
        points = []
        prefix = run.tag + " "
        for line in lines:
            if line.startswith(prefix):
                try:
                    points.extend(parse_metric_record(line[len(prefix) :]))
                except (ValueError, TypeError) as exc:
                    self._logs.append(run.job_id, f"ignored a malformed metrics record: {exc}")
                continue
            output.append(line)
            run.tail.append(line)
        if points:
            try:
                await self._on_metrics(run.job_id, points)
            except Exception:
                logger.exception("storing metrics of job %s failed", run.job_id)
        if output:
            self._logs.append_lines(run.job_id, output, "output")

    async def _poll_status(self, run: _RayRun, pump: asyncio.Task[None]) -> None:
        client = await self._ray()
        assert run.outcome is not None
        try:
            while True:
                # get_job_status is get_job_info(...).status: one read gives both
                info = await asyncio.to_thread(client.get_job_info, run.submission_id)
                status = info.status
                if status in _TERMINAL:
                    break
                elapsed = time.monotonic() - run.started
                if (
                    run.max_runtime_seconds is not None
                    and elapsed > run.max_runtime_seconds
                    and not run.timed_out
                ):
                    run.timed_out = True
                    self._logs.append(
                        run.job_id,
                        f"max_runtime_seconds={run.max_runtime_seconds:g} exceeded: stopping",
                    )
                    await asyncio.to_thread(client.stop_job, run.submission_id)
                await asyncio.sleep(poll_delay(elapsed, self._poll))
            await self._finish_logs(run, pump)
            outcome = await self._outcome(run, status, info)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("watching Ray job %s failed", run.job_id)
            outcome = JobOutcome(JobStatus.FAILED, f"lost track of the Ray job: {exc}")
        self._logs.append(
            run.job_id, f"Ray job {run.submission_id!r} ended: {outcome.status.value}"
        )
        if not run.outcome.done():
            run.outcome.set_result(outcome)

    async def _outcome(self, run: _RayRun, status: RayStatus, info: Any) -> JobOutcome:
        usage: dict[str, float] = {}
        if info.start_time and info.end_time:
            usage["wall_seconds"] = round((info.end_time - info.start_time) / 1000, 3)
        code = info.driver_exit_code
        if run.timed_out:
            message = f"exceeded max_runtime_seconds={run.max_runtime_seconds:g}"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        if status is RayStatus.STOPPED:
            if run.cancel_requested:
                return JobOutcome(JobStatus.CANCELLED, "cancelled by request", code, usage)
            return JobOutcome(
                JobStatus.FAILED, "the Ray job was stopped outside the platform", code, usage
            )
        if status is RayStatus.FAILED:
            tail = "\n".join(run.tail)
            what = f"exited with code {code}" if code is not None else "failed"
            message = f"the job {what}: {info.message or 'no message from Ray'}"
            if tail:
                message += f"; last output lines:\n{tail}"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        try:
            copied = await asyncio.to_thread(copy_outputs, run.output_dir, run.output_path)
        except Exception as exc:
            message = f"the job succeeded but copying its outputs to output_path failed: {exc}"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        self._logs.append(run.job_id, f"copied {copied} output file(s) to {run.output_path}")
        return JobOutcome(JobStatus.SUCCEEDED, None, code if code is not None else 0, usage)
