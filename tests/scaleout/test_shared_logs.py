"""Job logs in the database: what one replica's scheduler writes, every replica reads and
follows, with the same line ids (so ``Last-Event-ID`` resumes anywhere). Both backends."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from ml_platform.jobs.logs import LogLine, LogStore
from tests.conftest import Platform

REDIS_URL = "redis://127.0.0.1:6379/0"


def _job_id() -> str:
    return "job_" + secrets.token_hex(8)


def test_lines_written_by_one_replica_are_read_by_another(
    platform: Platform, tmp_path: Path
) -> None:
    writer = LogStore(tmp_path / "replica-a" / "jobs", db=platform.db)
    reader = LogStore(tmp_path / "replica-b" / "jobs", db=platform.db)
    job = _job_id()
    writer.append_lines(job, ["epoch 1", "epoch 2"], "stdout")
    writer.append(job, "done\nbye", "system")
    assert reader.count(job) == 4
    lines = reader.read_after(job, 0)
    assert [(line.id, line.stream, line.text) for line in lines] == [
        (1, "stdout", "epoch 1"),
        (2, "stdout", "epoch 2"),
        (3, "system", "done"),
        (4, "system", "bye"),
    ]
    assert [line.id for line in reader.read_after(job, 2, limit=1)] == [3]
    assert [line.text for line in reader.tail(job, 1)] == ["bye"]
    assert lines[0].timestamp.tzinfo is not None
    assert not (tmp_path / "replica-b").exists()  # nothing read from (or written to) a disk


def test_writers_on_two_replicas_number_lines_without_gaps_or_repeats(
    platform: Platform, tmp_path: Path
) -> None:
    """A failover: the new scheduler appends after the old one's lines, never over them."""
    old = LogStore(tmp_path / "a", db=platform.db)
    new = LogStore(tmp_path / "b", db=platform.db)
    job = _job_id()
    for i in range(5):
        (old if i % 2 == 0 else new).append(job, f"line {i}")
    lines = new.read_after(job, 0)
    assert [(line.id, line.text) for line in lines] == [(i + 1, f"line {i}") for i in range(5)]


def test_a_follower_on_another_replica_gets_live_lines_and_resumes(
    platform: Platform, tmp_path: Path
) -> None:
    writer = LogStore(tmp_path / "a", db=platform.db)
    follower = LogStore(tmp_path / "b", db=platform.db, poll_interval=0.05)
    job = _job_id()
    finished = asyncio.Event()

    async def is_finished() -> bool:
        return finished.is_set()

    async def scenario() -> tuple[list[LogLine], list[LogLine]]:
        received: list[LogLine] = []

        async def follow() -> None:
            async for line in follower.follow(job, 0, is_finished):
                received.append(line)

        task = asyncio.create_task(follow())
        for i in range(1, 4):
            await asyncio.to_thread(writer.append, job, f"live {i}", "stdout")
            while len(received) < i:  # each line arrives while the job still runs
                await asyncio.sleep(0.01)
        await asyncio.to_thread(writer.append, job, "last words", "stdout")
        finished.set()
        await asyncio.wait_for(task, 10)
        resumed = [line async for line in follower.follow(job, 2, is_finished)]
        return received, resumed

    received, resumed = asyncio.run(scenario())
    assert [line.text for line in received] == ["live 1", "live 2", "live 3", "last words"]
    assert [line.id for line in resumed] == [3, 4]  # Last-Event-ID: 2 -> nothing lost or repeated


def test_redis_wakes_a_follower_on_another_replica_at_once(
    platform: Platform, tmp_path: Path
) -> None:
    """The follower polls only once a minute: the line reaches it by the Redis wake-up."""
    from ml_platform.jobs.log_fanout import RedisLogFanout

    if platform.db.dialect == "sqlite":
        pytest.skip("one machine: no fan-out needed")
    prefix = f"mlp-logs-test-{secrets.token_hex(4)}"
    writer_fanout = RedisLogFanout(REDIS_URL, prefix=prefix)
    follower_fanout = RedisLogFanout(REDIS_URL, prefix=prefix)
    writer = LogStore(tmp_path / "a", db=platform.db, fanout=writer_fanout)
    follower = LogStore(tmp_path / "b", db=platform.db, poll_interval=60, fanout=follower_fanout)
    job = _job_id()
    done = False

    async def is_finished() -> bool:
        return done

    async def scenario() -> list[str]:
        nonlocal done
        received: list[str] = []

        async def follow() -> None:
            async for line in follower.follow(job, 0, is_finished):
                received.append(line.text)
                if line.text == "second":
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.5)  # the follower is parked in its minute-long poll
        for text in ("first", "second"):
            await asyncio.to_thread(writer.append, job, text, "stdout")
            await asyncio.sleep(0.2)  # each line is its own wake-up (the listener subscribed)
        await asyncio.wait_for(task, 20)  # far below the poll: only Redis can have woken it
        done = True
        return received

    try:
        assert asyncio.run(scenario()) == ["first", "second"]
    finally:
        writer_fanout.close()
        follower_fanout.close()
