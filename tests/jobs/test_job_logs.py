from __future__ import annotations

import asyncio
from pathlib import Path

from ml_platform.jobs.logs import LogStore


def test_ids_tail_and_read_after(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append("job_a", "one\ntwo", "stdout")
    store.append_lines("job_a", ["three", "four with  spaces"], "stderr")
    assert store.count("job_a") == 4
    assert [(line.id, line.stream, line.text) for line in store.tail("job_a", 2)] == [
        (3, "stderr", "three"),
        (4, "stderr", "four with  spaces"),
    ]
    assert [line.text for line in store.read_after("job_a", 1, limit=2)] == ["two", "three"]
    assert store.read_after("job_a", 4) == []
    assert store.tail("job_missing", 10) == []
    # A second store (another process) sees the same ids.
    other = LogStore(tmp_path)
    assert [line.id for line in other.read_after("job_a", 2)] == [3, 4]


def test_partial_trailing_line_is_not_read(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append("job_a", "done", "stdout")
    with open(store.path("job_a"), "ab") as handle:
        handle.write(b"2024-01-01T00:00:00Z stdout half")
    assert [line.text for line in store.read_after("job_a", 0)] == ["done"]


async def test_follow_resumes_without_loss_or_repeats(tmp_path: Path) -> None:
    store = LogStore(tmp_path, poll_interval=0.05)
    finished = asyncio.Event()

    async def is_finished() -> bool:
        return finished.is_set()

    async def produce() -> None:
        for i in range(1, 201):
            store.append("job_f", f"line {i}", "stdout")
            if i % 20 == 0:
                await asyncio.sleep(0)
        finished.set()
        store.notify("job_f")

    producer = asyncio.create_task(produce())
    seen: list[int] = []
    # Drop the connection after 37 lines, then resume from the last id seen.
    async for line in store.follow("job_f", 0, is_finished):
        seen.append(line.id)
        if len(seen) == 37:
            break
    async for line in store.follow("job_f", seen[-1], is_finished):
        seen.append(line.id)
    await producer
    assert seen == list(range(1, 201))
