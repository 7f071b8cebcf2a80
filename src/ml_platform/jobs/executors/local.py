"""The local executor: one subprocess per job on this machine.

Each attempt runs in its own session / process group, with its working directory under
``<jobs_dir>/<job_id>/work``. Layout of a job directory::

    <jobs_dir>/<job_id>/          owned by the server, mode 0711
        job.log                   interleaved stdout/stderr, one timestamped line each
        state.json                pid, pgid, process start time: enough to recover after kill -9
        work/                     owned by the job's OS user, mode 0700
            code/                 a copy of the code package: the entrypoint's cwd
            output/               ML_PLATFORM_OUTPUT_DIR, copied to output_path on exit 0
            input/                staged data (only when running as a separate job user)
            home/                 HOME
            metrics.jsonl         ML_PLATFORM_METRICS_FILE: the metrics channel

Security model (documented in the README): job code has exactly the rights of the OS user it
runs as. When the server runs as root and ``job_user`` is set, jobs run as that user, with no
supplementary groups, umask 077, an environment built from scratch (no server secrets), and a
work directory only they own; local input data is copied into ``work/input`` so the job never
needs read access to any tenant's area. Without ``job_user`` jobs run as the server's user and
can read whatever it can: fine for a single-user laptop, not for a shared server.

The job runs in ``job_python`` (or the server's interpreter); ``docker_image`` is recorded but
not used by this executor, and the log says so.

Every process of an attempt carries ``ML_PLATFORM_RUN_ID=<job id>-a<attempt>`` in its
environment (inherited by its children): ``recover`` finds an attempt by it even when the
server died before any pid was saved (between the spawn and ``state.json`` / the handle).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pwd
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ml_platform.core.jobs import JobStatus
from ml_platform.jobs.executors._files import chown_tree, copy_outputs
from ml_platform.jobs.executors.base import JobLaunch, JobOutcome
from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.metrics import MetricPoint, MetricsSink, parse_metric_record
from ml_platform.storage import Storage

logger = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
MAX_LOG_BYTES = 512 * 1024 * 1024
"""Per attempt: a job printing without end cannot fill the platform's disk."""
METRICS_BEFORE_LINES_SECONDS = 10.0  # the longest a reader waits for a metrics drain
READER_END_SECONDS = 10.0  # after the job's processes are gone, for its last output lines
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_RUNTIME_ROOT = str(Path(__file__).resolve().parents[3])
"""The directory holding the ``ml_platform`` package, put on the job's PYTHONPATH so scripts
can ``import ml_platform.runtime`` (pure standard library) in any interpreter."""


def tenant_view(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    """``text`` with each absolute server path prefix replaced by what the tenant may see.

    ``replacements`` pairs an absolute directory with its tenant-facing name; a prefix only
    matches whole path components (``/d/tenants/t1`` does not touch ``/d/tenants/t10``), and
    longer prefixes win. Used for every line this executor writes into a job's log and every
    error message it reports: tenants see ``models/run-1`` and ``work/output``, never the
    server's data directory.
    """
    for absolute, shown in sorted(replacements, key=lambda pair: -len(pair[0])):
        absolute = absolute.rstrip("/")
        if not absolute:
            continue
        pattern = re.escape(absolute) + r"(/|(?=[\s'\",:;)\]}]|\.(?:\s|$)|$))"

        def name(match: re.Match[str], shown: str = shown) -> str:
            if match.group(1):  # a path below the prefix
                return shown + "/" if shown else ""
            return shown or "."

        text = re.sub(pattern, name, text)
    return text


def run_id(job_id: str, attempt: int) -> str:
    """The deterministic name of one attempt, in ``ML_PLATFORM_RUN_ID`` of its processes."""
    return f"{job_id}-a{attempt}"


@dataclass
class _Run:
    launch: JobLaunch
    job_dir: Path
    work: Path
    outcome: asyncio.Future[JobOutcome]
    process: subprocess.Popen[bytes] | None = None
    pgid: int | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_status: int | None = None
    rusage: Any = None
    cancel_requested: bool = False
    shutdown: bool = False
    log_bytes: int = 0
    log_truncated: bool = False
    timed_out: bool = False
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    peak_rss: int = 0
    pids: set[int] = field(default_factory=set)
    reader: threading.Thread | None = None
    read_all: asyncio.Event = field(default_factory=asyncio.Event)  # the reader has ended
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    metrics_offset: int = 0
    metrics_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    view: Callable[[str], str] = str
    """Turns server paths in a message into tenant-relative ones (see ``tenant_view``)."""

    @property
    def metrics_file(self) -> Path:
        """The job's metrics channel (``ML_PLATFORM_METRICS_FILE``)."""
        return self.work / "metrics.jsonl"


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        *,
        jobs_dir: Path,
        logs: LogStore,
        on_metrics: MetricsSink,
        python: str | None = None,
        job_user: str | None = None,
        cancel_grace_seconds: float = 10.0,
        sample_interval: float = 0.25,
        max_log_bytes: int = MAX_LOG_BYTES,
        tenant_root: Callable[[str], Path] | None = None,
        storage: Storage | None = None,
    ) -> None:
        """``storage``: the platform's storage; a ``data_path`` in it is staged into the job's
        work directory and an ``output_path`` in it is published there, with the platform's
        credentials (jobs need none)."""
        self._storage = storage
        self._max_log_bytes = max_log_bytes
        self._tenant_root = tenant_root
        self._jobs_dir = jobs_dir
        self._logs = logs
        self._on_metrics = on_metrics
        self._python = python or sys.executable
        self._foreign_python = (
            python is not None and Path(python).resolve() != Path(sys.executable).resolve()
        )
        self._grace = cancel_grace_seconds
        self._sample_interval = sample_interval
        self._runs: dict[str, _Run] = {}
        self._user: pwd.struct_passwd | None = None
        if job_user:
            try:
                self._user = pwd.getpwnam(job_user)
            except KeyError as exc:
                raise ValueError(f"job_user {job_user!r} does not exist on this machine") from exc
            if os.geteuid() != 0:
                logger.warning(
                    "job_user=%s is ignored: the server is not root, so jobs run as uid %d",
                    job_user,
                    os.geteuid(),
                )
                self._user = None

    # -- public API ------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self._logs.path(job_id).parent

    def _replacements(self, job_id: str, tenant_id: str | None) -> list[tuple[str, str]]:
        """What this job's tenant sees instead of the server's paths."""
        job_dir = self.job_dir(job_id)
        pairs = [
            (str(job_dir), ""),  # <job dir>/work/code -> work/code
            (os.path.realpath(job_dir), ""),
            (self._python, Path(self._python).name),
        ]
        if self._tenant_root is not None:  # in the platform: <data_dir>/jobs/<job id>
            pairs.append((os.path.realpath(job_dir.parent.parent), "<platform data>"))
            if tenant_id is not None:
                with contextlib.suppress(Exception):
                    pairs.append((str(self._tenant_root(tenant_id)), ""))
        return pairs

    def _view(self, job_id: str, tenant_id: str | None) -> Callable[[str], str]:
        pairs = self._replacements(job_id, tenant_id)
        return lambda text: tenant_view(text, pairs)

    async def start(self, launch: JobLaunch) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        job_dir = self.job_dir(launch.job_id)
        run = _Run(
            launch=launch,
            job_dir=job_dir,
            work=job_dir / "work",
            outcome=loop.create_future(),
            view=self._view(launch.job_id, launch.tenant_id),
        )
        self._runs[launch.job_id] = run
        try:
            argv, env = await asyncio.to_thread(self._prepare, run)
            run.process = await asyncio.to_thread(self._spawn, run, argv, env)
        except Exception as exc:
            message = f"could not start the job: {exc}"
            if isinstance(exc, PermissionError) and self._user is not None:
                message += f" (can OS user {self._user.pw_name!r} run {self._python}?)"
            message = run.view(message)
            self._log(launch.job_id, message)
            run.outcome.set_result(JobOutcome(JobStatus.FAILED, error_message=message))
            return {"executor": self.name, "attempt": launch.attempt, "pid": None}
        process = run.process
        run.pgid = process.pid
        try:
            create_time = psutil.Process(process.pid).create_time()
        except psutil.Error:
            create_time = None
        handle = {
            "executor": self.name,
            "attempt": launch.attempt,
            "run_id": run_id(launch.job_id, launch.attempt),
            "pid": process.pid,
            "pgid": run.pgid,
            "create_time": create_time,
            "started_at": time.time(),
        }
        # Watch first: nothing after the spawn may leave the process unwatched.
        run.pids.add(process.pid)
        self._start_threads(run, loop)
        run.tasks.append(asyncio.create_task(self._supervise(run), name=f"job-{launch.job_id}"))
        try:
            (job_dir / "state.json").write_text(json.dumps(handle))
        except OSError:  # recovery still finds the attempt by its run id
            logger.exception("could not write state.json of job %s", launch.job_id)
        return handle

    async def wait(self, job_id: str) -> JobOutcome:
        run = self._runs.get(job_id)
        if run is None:
            raise KeyError(f"job {job_id} is not running on this executor")
        try:
            return await asyncio.shield(run.outcome)
        finally:
            if run.outcome.done():
                self._runs.pop(job_id, None)

    async def cancel(self, job_id: str) -> None:
        run = self._runs.get(job_id)
        if run is None or run.outcome.done():
            return
        run.cancel_requested = True
        self._log(job_id, "cancel requested: stopping the job's process group")
        await self._stop(run)

    async def recover(self, job_id: str, handle: Mapping[str, Any]) -> JobOutcome | None:
        """A local job's pipes die with the server, so it is never re-adopted: whatever is
        still alive of the attempt is stopped (SIGTERM, then SIGKILL) and the attempt failed.

        The attempt is found by the handle's pid, else by ``state.json``, and in any case by
        the ``ML_PLATFORM_RUN_ID`` its processes carry: a starting claim (the server died
        between the scheduler's claim and saving this executor's handle) has no pid at all.
        """
        state = dict(handle)
        attempt = state.get("attempt")
        starting = state.get("state") == "starting"
        state_file = self.job_dir(job_id) / "state.json"
        if not state.get("pid") and state_file.exists():
            with contextlib.suppress(OSError, ValueError):
                saved = json.loads(state_file.read_text())
                if isinstance(saved, dict) and (attempt is None or saved.get("attempt") == attempt):
                    state = {**state, **saved}
        groups: dict[int, int] = {}  # pgid -> a pid in it
        pid = state.get("pid")
        if isinstance(pid, int) and _is_process(pid, state.get("create_time")):
            groups[int(state.get("pgid") or pid)] = pid
        tagged: list[int] = []
        if isinstance(attempt, int):
            tagged = await asyncio.to_thread(_tagged_processes, run_id(job_id, attempt))
        own_group = os.getpgrp()
        for tagged_pid in tagged:
            with contextlib.suppress(OSError):
                pgid = os.getpgid(tagged_pid)
                if pgid != own_group:
                    groups.setdefault(pgid, tagged_pid)
        for pgid in groups:
            await _kill_group(pgid, min(self._grace, 5.0))
        for tagged_pid in tagged:  # anything tagged that left the groups
            with contextlib.suppress(psutil.Error):
                psutil.Process(tagged_pid).kill()
        when = "starting" if starting else "running"
        if groups or tagged:
            shown = sorted({*groups.values(), *tagged})
            pids = ", ".join(str(p) for p in shown)
            message = (
                f"the server restarted while this job was {when}; its process (pid {pids}) "
                "was stopped because a local job cannot be re-attached"
            )
        elif starting and not state.get("pid"):
            message = "the server stopped while the job was starting; no process of it was found"
        else:
            message = "the job's process ended while the server was down; its result is unknown"
        self._log(job_id, message)
        return JobOutcome(JobStatus.FAILED, error_message=message)

    async def aclose(self) -> None:
        """Server shutdown: stop running jobs (their output pipes end with this process) and
        fail them with that reason (a job with retries left runs again after a restart)."""
        for run in list(self._runs.values()):
            if not run.outcome.done():
                run.shutdown = True
                self._log(run.launch.job_id, "the server is shutting down: stopping the job")
                await self._stop(run)
        for run in list(self._runs.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(run.outcome), self._grace + 5)

    # -- preparation (in a worker thread) ----------------------------------------------------

    def _prepare(self, run: _Run) -> tuple[list[str], dict[str, str]]:
        launch = run.launch
        run.job_dir.mkdir(parents=True, exist_ok=True)
        run.job_dir.chmod(0o711)  # traversable, not listable, for the job user
        if run.work.exists():  # a retried attempt starts from a clean work directory
            shutil.rmtree(run.work)
        metrics_file = run.metrics_file
        code = run.work / "code"
        output = run.work / "output"
        home = run.work / "home"
        run.work.mkdir(mode=0o700)
        if launch.code_dir is not None:
            shutil.copytree(launch.code_dir, code, symlinks=False)
        else:
            code.mkdir()
        output.mkdir()
        home.mkdir()
        metrics_file.touch(mode=0o600)
        pythonpath = _RUNTIME_ROOT
        if self._foreign_python:
            # Another interpreter may lack the SDK's dependencies: give it only the runtime
            # (pure standard library) under a bare ``ml_platform`` package.
            lib = run.work / "lib"
            shutil.copytree(
                Path(_RUNTIME_ROOT) / "ml_platform" / "runtime",
                lib / "ml_platform" / "runtime",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            (lib / "ml_platform" / "__init__.py").write_text("")
            pythonpath = str(lib)
        data_path = launch.data_path
        if self._storage is not None and self._storage.key_for_uri(data_path) is not None:
            data_path = self._stage_from_storage(run, data_path)
        if self._user is not None:
            data_path = self._stage_input(run, data_path)
            chown_tree(run.work, self._user.pw_uid, self._user.pw_gid)

        env: dict[str, str] = {str(k): str(v) for k, v in launch.env_vars.items()}
        python_dir = str(Path(self._python).parent)
        env.update(
            {
                "PATH": f"{python_dir}:{_SAFE_PATH}",
                "HOME": str(home),
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": pythonpath,
                "ML_PLATFORM_JOB_ID": launch.job_id,
                "ML_PLATFORM_RUN_ID": run_id(launch.job_id, launch.attempt),
                "ML_PLATFORM_DATA_PATH": data_path,
                "ML_PLATFORM_OUTPUT_DIR": str(output),
                "ML_PLATFORM_HYPERPARAMETERS": json.dumps(dict(launch.hyperparameters)),
                "ML_PLATFORM_METRICS_FILE": str(metrics_file),
            }
        )
        argv = self._argv(launch.entrypoint)
        user = self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name
        self._log(
            launch.job_id,
            f"attempt {launch.attempt}: local executor running {shlex.join(argv)} "
            f"in {code} as OS user {user!r} with {self._python}",
        )
        if launch.docker_image:
            self._log(
                launch.job_id,
                f"docker_image {launch.docker_image!r} is recorded but not used by the local "
                "executor: the job runs in the interpreter above",
            )
        return argv, env

    def _stage_from_storage(self, run: _Run, data_path: str) -> str:
        assert self._storage is not None
        key = self._storage.key_for_uri(data_path)
        assert key is not None
        staged = run.work / "input" / key.rsplit("/", 1)[-1]
        try:
            count = self._storage.download_tree(key, staged)
        except FileNotFoundError:
            return data_path  # the script will report the missing path itself
        if count == 0:
            return data_path
        self._log(run.launch.job_id, f"staged data_path ({count} file(s)) from the storage")
        return str(staged)

    def _stage_input(self, run: _Run, data_path: str) -> str:
        if "://" in data_path and not data_path.startswith("file://"):
            return data_path
        source = Path(data_path.removeprefix("file://"))
        if not source.exists():
            return data_path  # the script will report the missing path itself
        staged = run.work / "input" / source.name
        staged.parent.mkdir()
        if source.is_dir():
            shutil.copytree(source, staged, symlinks=False)
        else:
            shutil.copy2(source, staged)
        self._log(run.launch.job_id, f"staged data_path into {staged} for the job's OS user")
        return str(staged)

    def _argv(self, entrypoint: str) -> list[str]:
        try:
            argv = shlex.split(entrypoint)
        except ValueError as exc:
            raise ValueError(f"entrypoint is not a valid command line: {exc}") from exc
        if not argv:
            raise ValueError("entrypoint is empty")
        if argv[0] in {"python", "python3"}:
            return [self._python, *argv[1:]]
        if argv[0].endswith(".py"):
            return [self._python, *argv]
        return argv

    def _spawn(self, run: _Run, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return subprocess.Popen(
            argv,
            cwd=run.work / "code",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            umask=0o077,
            **kwargs,
        )

    # -- watching ---------------------------------------------------------------------------

    def _start_threads(self, run: _Run, loop: asyncio.AbstractEventLoop) -> None:
        process = run.process
        assert process is not None and process.stdout is not None and process.stderr is not None
        job_id = run.launch.job_id

        def read_output() -> None:
            selector = selectors.DefaultSelector()
            buffers = {"stdout": b"", "stderr": b""}
            assert process.stdout is not None and process.stderr is not None
            selector.register(process.stdout, selectors.EVENT_READ, "stdout")
            selector.register(process.stderr, selectors.EVENT_READ, "stderr")
            open_streams = 2
            try:
                while open_streams:
                    for key, _ in selector.select():
                        stream = str(key.data)
                        chunk = os.read(key.fd, 65536)
                        if not chunk:
                            selector.unregister(key.fileobj)
                            open_streams -= 1
                            rest = buffers[stream]
                            if rest:
                                self._emit(run, stream, [rest], loop)
                            continue
                        data = buffers[stream] + chunk
                        *complete, buffers[stream] = data.split(b"\n")
                        if complete:
                            self._emit(run, stream, complete, loop)
            except Exception:  # pragma: no cover - a broken log file must not hang the job
                logger.exception("log reader for job %s failed", job_id)
            finally:
                selector.close()
                process.stdout.close()
                process.stderr.close()
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(run.read_all.set)

        def reap() -> None:
            _, status, rusage = os.wait4(process.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            process.returncode = code  # Popen never waits itself: we reaped it here

            def done() -> None:
                run.exit_status = code
                run.rusage = rusage
                run.exited.set()

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(done)

        run.reader = threading.Thread(target=read_output, name=f"logs-{job_id}", daemon=True)
        run.reader.start()
        threading.Thread(target=reap, name=f"reap-{job_id}", daemon=True).start()

    def _emit(
        self,
        run: _Run,
        stream: str,
        raw_lines: list[bytes],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Store output lines (on the reader thread), after the metrics the job recorded
        before writing them: a follower who reads ``epoch 2: ...`` finds epoch 1's metrics
        stored, whenever the sampler's next pass would come."""
        self._metrics_before_lines(run, loop)
        lines = [raw.decode("utf-8", errors="replace") for raw in raw_lines]
        if stream == "stderr":
            run.stderr_tail.extend(lines)
        if run.log_truncated:
            return
        run.log_bytes += sum(len(raw) + 40 for raw in raw_lines)
        if run.log_bytes > self._max_log_bytes:
            run.log_truncated = True
            self._log(
                run.launch.job_id,
                f"log limit of {self._max_log_bytes} bytes reached: further output is dropped "
                "(the job keeps running)",
            )
            return
        self._logs.append_lines(run.launch.job_id, lines, stream)

    async def _supervise(self, run: _Run) -> None:
        launch = run.launch
        sampling = asyncio.Event()  # set: the sampler ends after its current pass
        sampler = asyncio.create_task(self._sample(run, sampling))
        try:
            timeout = launch.max_runtime_seconds
            try:
                await asyncio.wait_for(run.exited.wait(), timeout)
            except TimeoutError:
                run.timed_out = True
                self._log(
                    launch.job_id,
                    f"max_runtime_seconds={timeout:g} exceeded: stopping the job",
                )
                await self._stop(run)
                await run.exited.wait()
            # The leader is gone; take down anything it left behind in its group.
            if run.pgid is not None:
                await _kill_group(run.pgid, 0.0)
            for pid in run.pids:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
            if run.reader is not None:
                # awaited on the loop, not joined from a pool thread: the reader's last lines
                # may wait for a metrics drain, which needs one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.read_all.wait(), READER_END_SECONDS)
        finally:
            # not cancelled: a pass cancelled while storing metrics left its store running,
            # racing the final drain's for the job's latest values (the older could win)
            sampling.set()
            await sampler
        await self._drain_metrics(run)
        outcome = await self._finish(run)
        if outcome.error_message:
            outcome = dataclasses.replace(outcome, error_message=run.view(outcome.error_message))
        self._log(
            launch.job_id,
            f"attempt {launch.attempt} ended: {outcome.status.value}"
            + (f" ({outcome.error_message})" if outcome.error_message else ""),
        )
        if not run.outcome.done():
            run.outcome.set_result(outcome)

    async def _sample(self, run: _Run, stop: asyncio.Event) -> None:
        """Track the group's processes (for cleanup) and peak RSS; forward metrics; until
        ``stop`` is set, after the pass it is in."""
        assert run.process is not None
        while not stop.is_set():
            await asyncio.to_thread(self._sample_once, run)
            await self._drain_metrics(run)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._sample_interval)

    def _sample_once(self, run: _Run) -> None:
        assert run.process is not None
        try:
            leader = psutil.Process(run.process.pid)
            procs = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                run.pids.add(proc.pid)
        run.peak_rss = max(run.peak_rss, total)

    def _metrics_before_lines(self, run: _Run, loop: asyncio.AbstractEventLoop) -> None:
        """On the reader thread: when the metrics file has grown, drain it on the loop and
        wait (a bounded while) before the lines that follow are stored."""
        try:
            size = os.lstat(run.metrics_file).st_size
        except OSError:
            return
        if size <= run.metrics_offset:
            return
        with contextlib.suppress(Exception):  # a closing loop: the final drain takes them
            asyncio.run_coroutine_threadsafe(self._drain_metrics(run), loop).result(
                METRICS_BEFORE_LINES_SECONDS
            )

    async def _drain_metrics(self, run: _Run) -> None:
        async with run.metrics_lock:  # the sampler's pass and the reader's never overlap
            points, run.metrics_offset, problems = await asyncio.to_thread(
                _read_metrics, run.metrics_file, run.metrics_offset
            )
            for problem in problems:
                self._log(run.launch.job_id, f"ignored a malformed metrics record: {problem}")
            if points:
                try:
                    await self._on_metrics(run.launch.job_id, points)
                except Exception:
                    logger.exception("storing metrics of job %s failed", run.launch.job_id)

    async def _finish(self, run: _Run) -> JobOutcome:
        launch = run.launch
        code = run.exit_status
        usage = self._usage(run)
        if run.shutdown:
            message = "the server shut down while the job was running"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        if run.cancel_requested:
            return JobOutcome(JobStatus.CANCELLED, "cancelled by request", code, usage)
        if run.timed_out:
            message = f"exceeded max_runtime_seconds={launch.max_runtime_seconds:g}"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        if code != 0:
            if code is not None and code < 0:
                what = f"killed by signal {signal.Signals(-code).name}"
            else:
                what = f"exited with code {code}"
            tail = "\n".join(run.stderr_tail)
            message = f"the job {what}" + (f"; last stderr lines:\n{tail}" if tail else "")
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        try:
            copied = await asyncio.to_thread(self._publish_outputs, run, launch.output_path)
        except Exception as exc:
            message = f"the job succeeded but copying its outputs to output_path failed: {exc}"
            return JobOutcome(JobStatus.FAILED, message, code, usage)
        self._log(launch.job_id, f"copied {copied} output file(s) to {launch.output_path}")
        return JobOutcome(JobStatus.SUCCEEDED, None, code, usage)

    def _publish_outputs(self, run: _Run, output_path: str) -> int:
        key = self._storage.key_for_uri(output_path) if self._storage is not None else None
        if self._storage is not None and key is not None:
            return self._storage.upload_tree(run.work / "output", key)
        return copy_outputs(run.work / "output", output_path)

    def _usage(self, run: _Run) -> dict[str, float]:
        usage = {"wall_seconds": round(time.monotonic() - run.started_monotonic, 3)}
        peak = run.peak_rss
        if run.rusage is not None:
            usage["cpu_seconds"] = round(run.rusage.ru_utime + run.rusage.ru_stime, 3)
            peak = max(peak, run.rusage.ru_maxrss * 1024)  # Linux reports KiB
        usage["peak_rss_mb"] = round(peak / (1024 * 1024), 2)
        return usage

    async def _stop(self, run: _Run) -> None:
        if run.pgid is None:
            return
        await _kill_group(run.pgid, self._grace, run.exited)

    def _log(self, job_id: str, message: str) -> None:
        run = self._runs.get(job_id)
        view = run.view if run is not None else self._view(job_id, None)
        try:
            self._logs.append(job_id, view(message), "system")
        except OSError:
            logger.exception("could not write to the log of job %s", job_id)


async def _kill_group(pgid: int, grace: float, exited: asyncio.Event | None = None) -> None:
    """SIGTERM the process group, wait up to ``grace`` for it to empty, then SIGKILL."""
    if grace > 0:
        if not _signal_group(pgid, signal.SIGTERM):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if exited is not None and exited.is_set() and not _group_alive(pgid):
                return
            if exited is None and not _group_alive(pgid):
                return
            await asyncio.sleep(0.05)
    if not _signal_group(pgid, signal.SIGKILL):
        return
    # SIGKILL is asynchronous: wait (bounded) until no live member is left.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not await asyncio.to_thread(_live_members, pgid):
            return
        await asyncio.sleep(0.02)


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("not allowed to signal process group %d", pgid)
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_members(pgid: int) -> bool:
    """Whether any non-zombie process is still in the group."""
    if not _group_alive(pgid):
        return False
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def _is_process(pid: int, create_time: object) -> bool:
    """Whether ``pid`` is alive and (when ``create_time`` is known) the same process."""
    try:
        proc = psutil.Process(pid)
        same = create_time is None or abs(proc.create_time() - float(str(create_time))) < 1.0
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def _tagged_processes(run: str) -> list[int]:
    """Live processes whose environment says ``ML_PLATFORM_RUN_ID=<run>``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("ML_PLATFORM_RUN_ID") != run:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _read_metrics(path: Path, offset: int) -> tuple[list[MetricPoint], int, list[str]]:
    """New complete records after ``offset``; never follows a symlink the job planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return [], offset, []
    with os.fdopen(fd, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read(16 * 1024 * 1024)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset, []
    points: list[MetricPoint] = []
    problems: list[str] = []
    for raw in chunk[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            points.extend(parse_metric_record(raw))
        except (ValueError, TypeError) as exc:
            problems.append(str(exc)[:200])
    return points, offset + end + 1, problems
