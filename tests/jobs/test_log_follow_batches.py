"""Many followers of one job, written from another thread (as the executor's reader does):
every follower gets every line once, in order, across the job's end; a follower that is
behind gets the lines in batches; the SSE frames of a line are encoded once and shared."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sse_starlette import ServerSentEvent

from ml_platform.api.v1.job_runtime import SSE_RETRY_MS, _line, _log_frame
from ml_platform.jobs.logs import LogLine, LogStore
from tests.conftest import Platform


async def _follow_all(store: LogStore, job: str, chunks: list[int], followers: int) -> None:
    done = threading.Event()
    total = sum(chunks)

    async def is_finished() -> bool:
        return done.is_set()

    def write() -> None:
        written = 0
        for size in chunks:
            store.append_lines(job, [f"line {written + i + 1}" for i in range(size)], "stdout")
            written += size
            time.sleep(0.001)
        done.set()
        store.notify(job)

    async def follow() -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        async for batch in store.follow_batches(job, 0, is_finished, batch=64):
            assert batch, "a batch is never empty"
            assert len(batch) <= 64
            seen.extend((line.id, line.text) for line in batch)
        return seen

    tasks = [asyncio.create_task(follow()) for _ in range(followers)]
    await asyncio.sleep(0.01)  # the followers wait before the first line
    writer = threading.Thread(target=write)
    writer.start()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    writer.join()
    expected = [(i, f"line {i}") for i in range(1, total + 1)]
    for seen in results:
        assert seen == expected


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=st.lists(st.integers(min_value=1, max_value=150), min_size=1, max_size=12))
def test_every_follower_gets_every_line_in_order_file_store(
    tmp_path: Path, chunks: list[int]
) -> None:
    store = LogStore(tmp_path, poll_interval=0.05)
    job = f"job_{time.monotonic_ns()}"
    asyncio.run(_follow_all(store, job, chunks, followers=20))


def test_every_follower_gets_every_line_in_order_database_store(
    platform: Platform, tmp_path: Path
) -> None:
    store = LogStore(tmp_path, poll_interval=0.05, db=platform.db)
    asyncio.run(_follow_all(store, "job_db_batches", [1, 70, 3, 130, 1, 64, 65], followers=20))


@pytest.mark.parametrize(("batch", "sizes"), [(500, [300]), (100, [100, 100, 100])])
async def test_a_follower_behind_gets_the_lines_in_batches(
    tmp_path: Path, batch: int, sizes: list[int]
) -> None:
    store = LogStore(tmp_path, poll_interval=0.05)
    store.append_lines("job_b", [f"l{i}" for i in range(300)], "stdout")

    async def is_finished() -> bool:
        return True

    batches = [b async for b in store.follow_batches("job_b", 0, is_finished, batch=batch)]
    assert [len(b) for b in batches] == sizes
    assert [line.id for b in batches for line in b] == list(range(1, 301))


def test_a_log_frame_is_the_sse_event_and_is_keyed_by_job_and_line() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    line = LogLine(7, stamp, "stdout", 'epoch "1" ü')

    def event(retry: int | None) -> bytes:
        data = _line(line).model_dump_json()
        return ServerSentEvent(data=data, event="log", id="7", retry=retry).encode()

    assert _log_frame("job_x", line) == event(None)
    assert _log_frame("job_x", line) is _log_frame("job_x", line)  # encoded once
    assert _log_frame("job_x", line, retry=SSE_RETRY_MS) == event(SSE_RETRY_MS)
    assert b"retry: 2000" in _log_frame("job_x", line, retry=SSE_RETRY_MS)
    other = LogLine(7, stamp, "stdout", "another job's line 7")
    assert b"another job" in _log_frame("job_y", other)
    assert b"another job" not in _log_frame("job_x", line)


def test_repeated_file_reads_share_one_parse_but_never_a_stale_or_shared_list(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path)
    other = LogStore(tmp_path)  # another process appending to the same file
    store.append_lines("job_r", ["a", "b"], "stdout")
    first = store.read_after("job_r", 0)
    again = store.read_after("job_r", 0)
    assert [line.text for line in again] == ["a", "b"]
    assert again is not first and again[0] is first[0]  # the same parse, a list of its own
    first.clear()
    assert [line.text for line in store.read_after("job_r", 0)] == ["a", "b"]
    other.append_lines("job_r", ["c"], "stderr")
    assert [(line.id, line.text) for line in store.read_after("job_r", 0)] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]
    store.path("job_r").unlink()
    store.forget("job_r")
    other.append_lines("job_r", ["new file"], "stdout")
    assert [(line.id, line.text) for line in store.read_after("job_r", 0)] == [(1, "new file")]
