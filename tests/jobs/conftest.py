"""A platform with the scheduler on (local executor), and helpers for job tests."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Platform, Tenant, start_platform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

JOB_SETTINGS: dict[str, object] = {
    "scheduler_enabled": True,
    "scheduler_interval_seconds": 0.2,
    "node_cpu_cores": 4,
    "node_memory_gb": 8,
    "node_gpus": 0,
    "tenant_max_concurrent_jobs": 2,
    "cancel_grace_seconds": 2.0,
    "job_retry_backoff_seconds": 0.2,
}


@pytest.fixture(scope="module")
def jobs_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    url = database_url_factory("sqlite")
    running, server = start_platform(
        "sqlite", tmp_path_factory.mktemp("jobs-data"), url, **JOB_SETTINGS
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def tenant_root(platform: Platform, tenant: Tenant) -> Path:
    return Path(platform.settings.data_dir).resolve() / "tenants" / tenant.id


def zip_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def zip_files(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def upload(client: httpx.Client, data: bytes) -> str:
    response = client.post(
        "/v1/code-packages", content=data, headers={"Content-Type": "application/zip"}
    )
    assert response.status_code in (200, 201), response.text
    package_id: str = response.json()["id"]
    return package_id


def job_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "test-job",
        "framework": "sklearn",
        "docker_image": "python:3.11",
        "entrypoint": "python train.py",
        "data_path": "data/train.csv",
        "output_path": "models/out",
        "compute": {"cpu_cores": 1, "memory_gb": 1},
    }
    body.update(changes)
    return body


def submit(client: httpx.Client, **changes: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs/training", json=job_body(**changes))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_for(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout  # a safety net against hangs, not an assertion
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/training/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['status']}: {job}")
        time.sleep(0.05)


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None


def sse_events(response: httpx.Response) -> Iterator[SseEvent]:
    event, data, event_id = "message", [], None
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
