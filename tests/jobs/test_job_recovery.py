"""``kill -9`` of the server mid-run, then a restart: no job stays ``running``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ml_platform.core.ids import new_id
from ml_platform.server.context import build_context
from tests.conftest import TEST_JWT_SECRET
from tests.ports import free_port

pytestmark = pytest.mark.slow

LAUNCHER = """
import uvicorn
from ml_platform.server.app import create_app
from ml_platform.server.context import build_context
from ml_platform.config import Settings
settings = Settings()
context = build_context(settings)
context.db.upgrade()
uvicorn.run(create_app(settings, context), host="127.0.0.1", port=settings.port,
            log_level="warning")
"""


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], env=env)
        self.base_url = f"http://127.0.0.1:{port}"
        while True:  # bounded by the test timeout
            if self.process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if httpx.get(self.base_url + "/livez", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")},
        "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "ML_PLATFORM_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'mlp.db'}",
        "ML_PLATFORM_JWT_SECRET": TEST_JWT_SECRET,
        "ML_PLATFORM_PORT": str(port),
        "ML_PLATFORM_NODE_CPU_CORES": "4",
        "ML_PLATFORM_NODE_MEMORY_GB": "8",
        "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2",
        "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "1",
        "ML_PLATFORM_CANCEL_GRACE_SECONDS": "1",
        # the polls below ask many times a second: the control-plane budget (600/minute)
        # would answer 429s, which is not what these tests are about
        "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",
    }
    yield env, f"http://127.0.0.1:{port}"


def _ok(response: httpx.Response) -> Any:
    """The JSON of a 200 answer; anything else fails the test with the answer shown."""
    assert response.status_code == 200, (
        f"{response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def _api_key(env: dict[str, str]) -> str:
    from ml_platform.config import Settings

    settings = Settings(
        data_dir=Path(env["ML_PLATFORM_DATA_DIR"]),
        database_url=env["ML_PLATFORM_DATABASE_URL"],
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        scheduler_enabled=False,
    )
    context = build_context(settings)
    context.db.upgrade()
    context.auth.create_tenant("crash")
    key = context.auth.create_api_key("crash", "crash-key").plaintext
    context.db.dispose()
    return key


def test_kill9_then_restart_leaves_no_job_running(server_env: tuple[dict[str, str], str]) -> None:
    env, _ = server_env
    key = _api_key(env)
    first = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
    try:
        client = httpx.Client(base_url=first.base_url, headers={"X-API-Key": key}, timeout=30)
        body = {
            "name": "long",
            "framework": "sklearn",
            "docker_image": "python:3.11",
            "entrypoint": "python -c \"import time; print('up', flush=True); time.sleep(600)\"",
            "data_path": "data.csv",
            "output_path": "out",
            "compute": {"cpu_cores": 1, "memory_gb": 1},
        }
        created = client.post("/v1/jobs/training", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        while _ok(client.get(f"/v1/jobs/training/{job_id}"))["status"] != "running":
            time.sleep(0.05)
        state = Path(env["ML_PLATFORM_DATA_DIR"]) / "jobs" / job_id / "state.json"
        while not state.exists():
            time.sleep(0.05)
        # Wait until the job printed its line: a job killed before it prints would write into
        # a pipe nobody reads and die of it, which is another (correctly reported) outcome.
        logs = f"/v1/jobs/training/{job_id}/logs"
        while not any(e["line"] == "up" for e in _ok(client.get(logs))["logs"]):
            time.sleep(0.05)
        import json

        pid = json.loads(state.read_text())["pid"]
        first.kill9()
        assert psutil.pid_exists(pid)  # the job outlived its server
    finally:
        first.stop()
    second = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
    try:
        client = httpx.Client(base_url=second.base_url, headers={"X-API-Key": key}, timeout=30)
        while (job := _ok(client.get(f"/v1/jobs/training/{job_id}")))["status"] == "running":
            time.sleep(0.1)
        assert job["status"] == "failed"
        assert "server restarted" in job["error_message"]
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        second.stop()


# -- the window between the scheduler's claim and the executor's saved handle -----------------

SLEEP_WITH_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "print('up', flush=True); time.sleep(600)"
)


def _tagged(run: str, variable: str = "ML_PLATFORM_RUN_ID") -> list[int]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(variable) == run and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
    return found


def test_recover_finds_an_attempt_started_but_never_saved(tmp_path: Path) -> None:
    """A real attempt started by the local executor; the server "dies" before the handle
    (and even state.json) is saved. A fresh executor given only the starting claim stops the
    attempt's whole process tree, found by its run id."""
    import asyncio

    from ml_platform.jobs.executors.base import JobLaunch
    from ml_platform.jobs.executors.local import LocalExecutor
    from ml_platform.jobs.logs import LogStore
    from ml_platform.jobs.scheduler import starting_claim

    async def no_metrics(_job_id: str, _points: object) -> None:
        return None

    jobs_dir = tmp_path / "jobs"
    logs = LogStore(jobs_dir)
    job_id = new_id("job")  # unique: other test runs on this machine tag their own
    output = tmp_path / "out"

    async def scenario() -> tuple[str | None, list[int], list[int]]:
        first = LocalExecutor(
            jobs_dir=jobs_dir, logs=logs, on_metrics=no_metrics, cancel_grace_seconds=1
        )
        handle = await first.start(
            JobLaunch(
                job_id=job_id,
                tenant_id="t",
                entrypoint=f'python -c "{SLEEP_WITH_CHILD}"',
                data_path=str(tmp_path),
                output_path=str(output),
                attempt=1,
            )
        )
        assert handle["run_id"] == f"{job_id}-a1"
        while len(_tagged(f"{job_id}-a1")) < 2:
            await asyncio.sleep(0.02)
        before = _tagged(f"{job_id}-a1")
        (jobs_dir / job_id / "state.json").unlink()  # died before state.json was written
        restarted = LocalExecutor(
            jobs_dir=jobs_dir, logs=logs, on_metrics=no_metrics, cancel_grace_seconds=1
        )
        try:
            outcome = await restarted.recover(job_id, starting_claim(1))
            after = _tagged(f"{job_id}-a1")
        finally:
            await first.cancel(job_id)  # a no-op when the recovery stopped the attempt
            await first.wait(job_id)
        assert outcome is not None and outcome.status.value == "failed"
        return outcome.error_message, before, after

    message, before, after = asyncio.run(scenario())
    assert len(before) == 2
    assert after == []
    assert message is not None and "while this job was starting" in message
    assert all(str(pid) in message for pid in before)


def test_recover_of_a_claim_with_no_process(tmp_path: Path) -> None:
    import asyncio

    from ml_platform.jobs.executors.local import LocalExecutor
    from ml_platform.jobs.logs import LogStore
    from ml_platform.jobs.scheduler import starting_claim

    async def no_metrics(_job_id: str, _points: object) -> None:
        return None

    executor = LocalExecutor(jobs_dir=tmp_path, logs=LogStore(tmp_path), on_metrics=no_metrics)
    outcome = asyncio.run(executor.recover(new_id("job"), starting_claim(2)))
    assert outcome is not None and outcome.error_message == (
        "the server stopped while the job was starting; no process of it was found"
    )


def test_restart_stops_the_process_of_a_claimed_attempt(
    tmp_path: Path, database_url_factory: object
) -> None:
    """The database says what a server that died right after starting the process leaves:
    the job running with only the starting claim; the process runs under its run id. A server
    starting on that database fails the job and stops the process."""
    from ml_platform.core.jobs import JobStatus
    from ml_platform.jobs.scheduler import starting_claim
    from ml_platform.schemas.jobs import TrainingJobSpec
    from ml_platform.store.job_runtime import JobRuntimeRepository
    from ml_platform.store.jobs import JobRepository, transition_job
    from tests.conftest import make_settings, start_platform
    from tests.jobs.conftest import JOB_SETTINGS, job_body

    url = database_url_factory("sqlite")  # type: ignore[operator]
    data_dir = tmp_path / "data"
    context = build_context(make_settings(data_dir, url))
    context.db.upgrade()
    tenant = context.auth.create_tenant("claims")
    job_id = new_id("job")
    with context.db.transaction() as session:
        JobRepository(session, tenant.id).add(
            job_id=job_id,
            name="claimed",
            framework="sklearn",
            spec=TrainingJobSpec.model_validate(job_body()).model_dump(mode="json"),
            env_vars={},
            tags={},
            created_by="test",
        )
        transition_job(
            session,
            job_id,
            tenant_id=tenant.id,
            target=JobStatus.RUNNING,
            reason="attempt 1 started on the local executor",
            attempt=1,
        )
        JobRuntimeRepository(session).upsert_runtime(
            job_id, tenant.id, attempt=1, executor="local", handle=starting_claim(1)
        )
    context.db.dispose()
    env = {**os.environ, "ML_PLATFORM_RUN_ID": f"{job_id}-a1"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    try:
        running, server = start_platform("sqlite", data_dir, url, **JOB_SETTINGS)
        try:
            with running.db.read() as session:
                job = JobRepository(session, tenant.id).get(job_id)
            while job is not None and job.status is JobStatus.RUNNING:
                time.sleep(0.05)
                with running.db.read() as session:
                    job = JobRepository(session, tenant.id).get(job_id)
            assert job is not None and job.status is JobStatus.FAILED
            # The recovery stopped it before recording the outcome (the timeout is only a
            # safety net against a hang).
            assert orphan.wait(timeout=30) == -signal.SIGTERM
            assert job.error_message == (
                f"the server restarted while this job was starting; its process (pid "
                f"{orphan.pid}) was stopped because a local job cannot be re-attached"
            )
        finally:
            running.close()
            server.stop()
            running.db.dispose()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_kill9_between_start_and_saved_handle_leaves_no_orphan(
    server_env: tuple[dict[str, str], str],
) -> None:
    """A real crash in the window: ``state.json`` of the second job is a FIFO, so the local
    executor blocks right after spawning its process, before any handle is saved; the server
    is then killed with SIGKILL. The restarted server finds the attempt by its run id."""
    import json

    env, _ = server_env
    env = {**env, "ML_PLATFORM_TENANT_MAX_CONCURRENT_JOBS": "1"}
    key = _api_key(env)
    body = {
        "name": "sleeper",
        "framework": "sklearn",
        "docker_image": "python:3.11",
        "entrypoint": 'python -c "import time; time.sleep(600)"',
        "data_path": "data.csv",
        "output_path": "out",
        "compute": {"cpu_cores": 1, "memory_gb": 1},
    }
    first = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
    second: ServerProcess | None = None
    fifo = None
    run = blocked_id = ""
    try:
        client = httpx.Client(base_url=first.base_url, headers={"X-API-Key": key}, timeout=30)
        holder = client.post("/v1/jobs/training", json=body).json()["id"]
        while _ok(client.get(f"/v1/jobs/training/{holder}"))["status"] != "running":
            time.sleep(0.05)
        blocked_id = client.post("/v1/jobs/training", json=body).json()["id"]  # tenant quota
        run = f"{blocked_id}-a1"
        fifo = Path(env["ML_PLATFORM_DATA_DIR"]) / "jobs" / blocked_id / "state.json"
        fifo.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(fifo)
        assert client.delete(f"/v1/jobs/training/{holder}").status_code == 204
        while not _tagged(run):  # spawned; the executor now blocks on the FIFO
            time.sleep(0.05)
        first.kill9()
        fifo.unlink()
        assert _tagged(run)  # the attempt outlived its server, known by no saved pid
        with sqlite3_connection(env) as db:
            row = db.execute("SELECT handle FROM job_runtime WHERE job_id = ?", (blocked_id,))
            assert json.loads(row.fetchone()[0]) == {"state": "starting", "attempt": 1}
        second = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
        client = httpx.Client(base_url=second.base_url, headers={"X-API-Key": key}, timeout=30)
        while (job := _ok(client.get(f"/v1/jobs/training/{blocked_id}")))["status"] == "running":
            time.sleep(0.1)
        assert job["status"] == "failed"
        assert "the server restarted while this job was starting" in job["error_message"]
        assert _tagged(run) == []
    finally:
        # A server blocked on the FIFO ignores SIGTERM: SIGKILL whatever is left.
        if first.process.poll() is None:
            first.kill9()
        if fifo is not None:
            fifo.unlink(missing_ok=True)
        if second is not None:
            second.stop()
        if blocked_id:
            for pid in _tagged(blocked_id, "ML_PLATFORM_JOB_ID"):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()


@contextlib.contextmanager
def sqlite3_connection(env: dict[str, str]) -> Iterator[Any]:
    import sqlite3

    path = env["ML_PLATFORM_DATABASE_URL"].removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()
