"""Job logs and job errors show tenant-relative paths, never the server's data directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from ml_platform.jobs.executors.local import tenant_view
from tests.conftest import Platform
from tests.jobs.conftest import submit, upload, wait_for, zip_files

WRITE_OUTPUT = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ['ML_PLATFORM_OUTPUT_DIR'], 'model.txt').write_text('m')\n"
    "print('wrote the model')\n"
)
CRASH = "def train():\n    raise RuntimeError('diverged')\n\ntrain()\n"


def server_dirs(platform: Platform) -> list[str]:
    data_dir = Path(platform.settings.data_dir)
    return [str(data_dir), str(data_dir.resolve()), os.path.realpath(data_dir)]


def everything_shown(client: httpx.Client, job_id: str) -> tuple[str, list[str]]:
    job = client.get(f"/v1/jobs/training/{job_id}")
    logs = client.get(f"/v1/jobs/training/{job_id}/logs", params={"tail": 500})
    assert job.status_code == 200 and logs.status_code == 200
    lines = [line["line"] for line in logs.json()["logs"]]
    return job.text + logs.text, lines


def test_tenant_view_matches_whole_components_longest_first() -> None:
    pairs = [("/d/tenants/t1", ""), ("/d/jobs/j1", ""), ("/d", "<platform data>")]
    assert tenant_view("copied 1 file to /d/tenants/t1/models/out", pairs) == (
        "copied 1 file to models/out"
    )
    assert tenant_view("in /d/jobs/j1/work/code as", pairs) == "in work/code as"
    assert tenant_view("root is /d/tenants/t1.", pairs) == "root is .."  # "." and a full stop
    assert tenant_view("/d/tenants/t1.bak", pairs) == "<platform data>/tenants/t1.bak"
    assert tenant_view("root is '/d/tenants/t1'", pairs) == "root is '.'"
    assert tenant_view("other: /d/tenants/t10/x", pairs) == "other: <platform data>/tenants/t10/x"
    assert tenant_view("/dx/y stays", pairs) == "/dx/y stays"


def test_a_successful_job_shows_tenant_relative_paths(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    package = upload(client, zip_files({"train.py": WRITE_OUTPUT}))
    job = submit(client, source=package, output_path="models/run-1")
    done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    shown, lines = everything_shown(client, job["id"])
    assert "copied 1 output file(s) to models/run-1" in lines
    started = next(line for line in lines if line.startswith("attempt 1: local executor"))
    assert " in work/code as OS user " in started
    for directory in server_dirs(jobs_platform):
        assert directory not in shown


def test_a_failed_job_reports_its_traceback_with_tenant_relative_paths(
    jobs_platform: Platform,
) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    package = upload(client, zip_files({"train.py": CRASH}))
    job = submit(client, source=package)
    done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "failed", done
    assert "RuntimeError: diverged" in done["error_message"]
    assert 'File "work/code/train.py", line 2' in done["error_message"]
    history = json.dumps(done["status_history"])
    logs = client.get(f"/v1/jobs/training/{job['id']}/logs", params={"tail": 500}).json()
    # The job's own stderr lines are its output, shown as printed; everything the platform
    # wrote about the job is tenant-relative.
    platform_lines = [line["line"] for line in logs["logs"] if line["stream"] == "system"]
    assert any(line.startswith("attempt 1 ended: failed") for line in platform_lines)
    for directory in server_dirs(jobs_platform):
        assert directory not in done["error_message"] and directory not in history
        assert all(directory not in line for line in platform_lines)
