"""An ended job's log lines are archived as one object in the storage (``logs/jobs/<id>.jsonl``)
and its live lines (PostgreSQL rows / the SQLite install's file) are dropped; the REST tail,
SSE (with ``Last-Event-ID``) and the WebSocket then answer from the archive with the very
ids and texts they gave while the lines were live. Also against S3 (moto) for the store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from ml_platform.jobs.logs import LogStore, archive_key
from ml_platform.storage import Storage
from ml_platform.store.db import Database
from ml_platform.store.job_runtime import JobLogRepository
from tests.conftest import BACKENDS, Platform, start_platform
from tests.jobs.conftest import JOB_SETTINGS, sse_events, submit, upload, zip_files
from tests.jobs.test_job_streams import _drain, _ws_url
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET

PRINTS = "for i in range(1, 61):\n    print(f'line {i}', flush=True)\n"


@pytest.fixture(scope="module", params=BACKENDS)
def archiving_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: Any,
) -> Iterator[Platform]:
    backend: str = request.param
    running, server = start_platform(
        backend,
        tmp_path_factory.mktemp(f"archive-{backend}"),
        database_url_factory(backend),
        **JOB_SETTINGS,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def _live_lines(platform: Platform, job_id: str) -> int:
    engine = platform.context.engine
    assert engine is not None
    if platform.backend == "sqlite":
        path = engine.logs.path(job_id)
        return len(path.read_bytes().splitlines()) if path.exists() else 0
    with platform.db.read() as session:
        return JobLogRepository(session).last_line_id(job_id)


def _wait_archived(platform: Platform, job_id: str) -> None:
    engine = platform.context.engine
    assert engine is not None
    deadline = time.monotonic() + 30  # a safety net against hangs, not an assertion
    while engine.storage.file_size(archive_key(job_id)) is None or _live_lines(platform, job_id):
        assert time.monotonic() < deadline, "the job's logs were not archived"
        time.sleep(0.05)


def test_ended_job_logs_are_served_from_the_archive(archiving_platform: Platform) -> None:
    platform = archiving_platform
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    job = submit(client, source=upload(client, zip_files({"train.py": PRINTS})))
    url = f"/v1/jobs/training/{job['id']}/logs"
    params = {"follow": "true", "tail": "10000"}
    live: list[tuple[int, str]] = []
    with client.stream("GET", url, params=params, timeout=60) as response:
        for event in sse_events(response):
            if event.event == "end":
                assert event.data == {"status": "succeeded"}
                break
            live.append((int(event.id or 0), event.data["line"]))
    assert [line_id for line_id, _ in live] == list(range(1, len(live) + 1))
    assert [text for _, text in live if text.startswith("line ")] == [
        f"line {i}" for i in range(1, 61)
    ]

    _wait_archived(platform, job["id"])
    engine = platform.context.engine
    assert engine is not None
    stored = engine.storage.get_bytes(archive_key(job["id"])).decode().splitlines()
    assert [(r["id"], r["line"]) for r in map(json.loads, stored)] == live

    # REST tail, from the archive
    tail = client.get(url, params={"tail": 5}).json()["logs"]
    assert [(e["id"], e["line"]) for e in tail] == live[-5:]
    # SSE resuming mid-way: exactly the lines after the id, then the end
    resumed: list[tuple[int, str]] = []
    with client.stream(
        "GET", url, params=params, headers={"Last-Event-ID": "37"}, timeout=60
    ) as response:
        for event in sse_events(response):
            if event.event == "end":
                break
            resumed.append((int(event.id or 0), event.data["line"]))
    assert resumed == live[37:]
    # the WebSocket replays the whole log
    with connect(
        _ws_url(platform, job["id"]), additional_headers={"X-API-Key": tenant.api_key}
    ) as ws:
        messages, code = _drain(ws)
    assert code == 1000
    assert [(m["id"], m["line"]) for m in messages if m["type"] == "log"] == live


def test_archive_on_s3_round_trips_and_drops_rows(
    s3: S3, database_url_factory: Any, tmp_path: Path
) -> None:
    db = Database(database_url_factory("postgres"))
    db.upgrade()
    storage = Storage(f"s3://{BUCKET}/{tmp_path.name}", s3.options)
    logs = LogStore(tmp_path / "jobs", db=db, archive=storage)
    job_id = "job-archive-s3"
    for i in range(1, 6):
        logs.append(job_id, f"step {i}", "stdout")
    before = logs.read_after(job_id, 0)
    assert logs.archive(job_id)
    with db.read() as session:
        assert JobLogRepository(session).last_line_id(job_id) == 0
    other_replica = LogStore(tmp_path / "other", db=db, archive=storage)
    assert other_replica.read_after(job_id, 0) == before
    assert other_replica.read_after(job_id, 3) == before[3:]
    assert other_replica.count(job_id) == 5
    assert other_replica.tail(job_id, 2) == before[-2:]
    db.dispose()


def test_a_job_cancelled_while_pending_has_its_lines_archived(
    archiving_platform: Platform,
) -> None:
    """A job that ends without the scheduler finishing it (cancelled in the queue, e.g.
    during a retry's backoff with the lines of its failed attempt) goes through the same
    archive path: its live lines become the archive, with their ids, and are dropped."""
    platform = archiving_platform
    engine = platform.context.engine
    assert engine is not None
    client = platform.client(platform.new_tenant())
    # a GPU job on a node without GPUs waits in the queue for ever
    gpu = {"compute_type": "gpu", "gpu_count": 1, "cpu_cores": 1, "memory_gb": 1}
    job = submit(client, compute=gpu)
    earlier = [f"attempt 1 line {i}" for i in range(1, 8)]
    engine.logs.append_lines(job["id"], earlier, "output")  # what a failed attempt printed
    assert client.get(f"/v1/jobs/training/{job['id']}").json()["status"] == "pending"
    assert client.delete(f"/v1/jobs/training/{job['id']}").status_code == 204

    _wait_archived(platform, job["id"])
    stored = engine.storage.get_bytes(archive_key(job["id"])).decode().splitlines()
    assert [(r["id"], r["line"]) for r in map(json.loads, stored)] == list(
        enumerate(earlier, start=1)
    )
    tail = client.get(f"/v1/jobs/training/{job['id']}/logs", params={"tail": 3}).json()["logs"]
    assert [(e["id"], e["line"]) for e in tail] == list(enumerate(earlier, start=1))[-3:]
