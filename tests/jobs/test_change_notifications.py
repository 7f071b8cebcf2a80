"""What a job change costs off the request path (issue 15): a submit is not final, so the log
archiver's thread does not look the job up; a cancel is final, and its logs are archived."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from ml_platform.jobs.engine import JobEngine
from tests.conftest import Platform, start_platform
from tests.jobs.conftest import submit


@pytest.fixture
def scheduler_off(tmp_path: Path, database_url_factory: Any) -> Iterator[Platform]:
    """A platform whose scheduler is off: every statement on the archiver's thread comes from
    the API's own change notifications."""
    running, server = start_platform("sqlite", tmp_path, database_url_factory("sqlite"))
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def _archiver_statements(platform: Platform) -> tuple[JobEngine, list[str]]:
    engine = platform.context.jobs._engine
    assert engine is not None
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name.startswith("mlp-log-archive"):
            seen.append(statement)

    event.listen(platform.db.engine, "before_cursor_execute", record)
    return engine, seen


def _drained(engine: JobEngine) -> None:
    """Wait until the archiver ran everything handed to it so far (one thread, in order)."""
    engine._archiver.submit(lambda: None).result(timeout=30)


def test_a_submit_does_not_look_the_job_up_on_the_archiver_thread(
    scheduler_off: Platform,
) -> None:
    client = scheduler_off.client(scheduler_off.new_tenant())
    engine, seen = _archiver_statements(scheduler_off)
    submit(client)
    _drained(engine)
    assert seen == []


def test_a_cancel_in_the_queue_archives_the_logs(scheduler_off: Platform) -> None:
    client = scheduler_off.client(scheduler_off.new_tenant())
    engine, seen = _archiver_statements(scheduler_off)
    job = submit(client)
    archived: list[str] = []
    original = engine.logs.archive

    def archive(job_id: str) -> bool:
        archived.append(job_id)
        return original(job_id)

    engine.logs.archive = archive  # type: ignore[method-assign]
    response = client.delete(f"/v1/jobs/training/{job['id']}")
    assert response.status_code in (200, 204), response.text
    _drained(engine)
    assert archived == [job["id"]]
    assert seen  # the cancel's look-up: terminal, never held by an executor
