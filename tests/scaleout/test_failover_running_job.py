"""Failover while a job runs: two replicas on one PostgreSQL database (their own data dirs, one
storage root, local executor), the lease holder an ``mlp server`` process and the other one
in the test's process. SIGKILL the holder while its job runs: the other replica takes the
lease, stops what is left of that attempt and retries the job per ``max_retries``. The job
ends succeeded on attempt 2, attempt 1's process was dead before attempt 2 started (never
two at once), nothing stays running, and a new job succeeds.

The job records each start (run id, pid, whether the previous attempt's pid was still alive)
in a file of the test's own, outside both data dirs."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet
from sqlalchemy import select

from ml_platform.jobs.scheduler import starting_claim
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobRuntimeRow
from tests.conftest import TEST_JWT_SECRET, Platform, start_platform
from tests.jobs.conftest import JOB_SETTINGS
from tests.scaleout.test_scale_out_loop import (
    _job,
    _lease_holder_pid,
    _ready,
    _spawn_replica,
    _wait,
)

# attempt 1 sleeps until it is stopped; a later attempt notes whether attempt 1 still lives
JOB = """
import os, sys, time
marker = sys.argv[1]
starts = open(marker).read().splitlines() if os.path.exists(marker) else []
alive = False
for line in starts:
    pid = int(line.split()[1])
    try:
        os.kill(pid, 0)
        alive = alive or open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        pass
with open(marker, "a") as out:
    out.write(f"{os.environ['ML_PLATFORM_RUN_ID']} {os.getpid()} {alive}\\n")
print("up", flush=True)
if not starts:
    time.sleep(600)
"""


SURVIVOR_SETTINGS: dict[str, object] = {
    **JOB_SETTINGS,
    "scheduler_lease_seconds": 2.0,
    "cancel_grace_seconds": 1.0,
}


def _env(database_url: str, data_dir: Path, storage: Path, secrets_key: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")},
        "ML_PLATFORM_DATA_DIR": str(data_dir),
        "ML_PLATFORM_CONFIG_DIR": str(data_dir / "config"),
        "ML_PLATFORM_DATABASE_URL": database_url,
        "ML_PLATFORM_STORAGE_URI": str(storage),
        "ML_PLATFORM_JWT_SECRET": TEST_JWT_SECRET,
        "ML_PLATFORM_SECRETS_KEY": secrets_key,
        "ML_PLATFORM_EXECUTOR": "local",
        "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "2",
        "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2",
        "ML_PLATFORM_JOB_RETRY_BACKOFF_SECONDS": "0.2",
        "ML_PLATFORM_CANCEL_GRACE_SECONDS": "1",
        "ML_PLATFORM_NODE_CPU_CORES": "4",
        "ML_PLATFORM_NODE_MEMORY_GB": "8",
        "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",
    }


def _submit(client: httpx.Client, entrypoint: str, max_retries: int) -> str:
    response = client.post(
        "/v1/jobs/training",
        json={
            "name": "failover", "framework": "sklearn", "docker_image": "python:3.11",
            "entrypoint": entrypoint, "data_path": "data.csv", "output_path": "out",
            "compute": {"cpu_cores": 1, "memory_gb": 1}, "max_retries": max_retries,
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def _handle_saved(db: Database, job_id: str) -> bool:
    """Whether the job's executor handle replaced the scheduler's starting claim."""
    with db.read() as session:
        handle = session.scalar(select(JobRuntimeRow.handle).where(JobRuntimeRow.job_id == job_id))
    return handle is not None and handle != starting_claim(handle.get("attempt", 0))


def test_killing_the_lease_holder_mid_job_retries_it_once_elsewhere(
    tmp_path: Path, database_url_factory: Any
) -> None:
    database_url = database_url_factory("postgres")
    secrets_key = Fernet.generate_key().decode()
    storage = tmp_path / "storage"
    # the holder is a process of its own (to be SIGKILLed); it takes the lease alone
    holder = _ready(
        _spawn_replica("holder", _env(database_url, tmp_path / "holder", storage, secrets_key))
    )
    survivor: Platform | None = None
    server = None
    try:
        survivor, server = start_platform(
            "postgres", tmp_path / "survivor", database_url, **SURVIVOR_SETTINGS,
            storage_uri=str(storage), secrets_key=secrets_key,
        )  # fmt: skip
        db = survivor.db
        assert _wait("the holder to take the lease", lambda: _lease_holder_pid(db)) == (
            holder.process.pid
        )
        client = survivor.client(survivor.new_tenant("failover"))
        script = tmp_path / "job.py"
        script.write_text(JOB)
        marker = tmp_path / "starts.txt"

        job_id = _submit(client, f"{sys.executable} {script} {marker}", max_retries=1)
        _wait("attempt 1 to run", lambda: marker.exists() and marker.read_text().count("\n"))
        run_1, pid_1, _ = marker.read_text().split()
        assert _job(client, job_id)["status"] == "running"
        # "mid job": once the executor saved its handle. Killed before, the attempt is one
        # the server was still starting, which recovery reports (rightly) as such.
        _wait("attempt 1's handle to be saved", lambda: _handle_saved(db, job_id))

        holder.stop(signal.SIGKILL)
        assert psutil.pid_exists(pid := int(pid_1))  # the job outlived its replica
        _wait("the survivor to take the lease", lambda: _lease_holder_pid(db) == os.getpid())
        job = _wait(
            "the job to end",
            lambda: (j := _job(client, job_id))["status"] in {"succeeded", "failed"} and j,
            timeout=60,
        )
        assert job["status"] == "succeeded", job
        assert job["attempt"] == 2, job
        starts = [line.split() for line in marker.read_text().splitlines()]
        assert len(starts) == 2, starts  # attempt 1 once, attempt 2 once
        assert starts[0][0] == run_1 and starts[1][0] != run_1
        assert starts[1][2] == "False", "attempt 1 was still alive when attempt 2 started"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        reasons = " ".join(str(e["reason"]) for e in job["status_history"])
        assert "server restarted while this job was running" in reasons, reasons

        # and the surviving scheduler runs new work
        fresh = _submit(client, f"{sys.executable} -c \"print('fresh')\"", max_retries=0)
        done = _wait(
            "the new job to end",
            lambda: (j := _job(client, fresh))["status"] in {"succeeded", "failed"} and j,
            timeout=60,
        )
        assert done["status"] == "succeeded", done
    finally:
        holder.stop()
        if survivor is not None and server is not None:
            survivor.close()
            server.stop()
            survivor.db.dispose()
