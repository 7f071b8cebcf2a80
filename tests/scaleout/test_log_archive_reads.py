"""Reading archived logs: streamed, never whole, and never an empty answer for a job whose
lines are moving from the live store to the archive.

- A generated archive (200,000 lines, ~25 MB; and one on S3) answers ``read_after`` /
  ``count`` / ``tail`` / ``follow`` with exactly the ids after a given id, while the reader
  holds a small fraction of the object in memory (tracemalloc) and a follower's next batch
  reads on from where the last one stopped (bytes counted), not from the start.
- Two real ``LogStore`` instances on one PostgreSQL database play two replicas: replica A
  archives (writes the archive, drops the rows) at chosen points of replica B's reads (a
  hook in the follower's ``is_finished``, or between two calls), and B always answers the
  lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from ml_platform.jobs.log_archive import archive_key, encode
from ml_platform.jobs.logs import LogLine, LogStore
from ml_platform.storage import Storage
from ml_platform.store.db import Database
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET

LINES = 200_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _line(line_id: int) -> LogLine:
    return LogLine(line_id, T0, "output", f"step {line_id}: loss={1 / line_id:.6f} " + "x" * 40)


def _write_archive(storage: Storage, job_id: str, count: int) -> int:
    stored = storage.put(archive_key(job_id), encode(_line(i) for i in range(1, count + 1)))
    return stored.size_bytes


class _CountingStorage(Storage):
    """A local storage that counts the bytes its readers take out of objects."""

    bytes_read = 0

    @contextlib.contextmanager
    def open(self, key: str, *, block_size: int | None = None) -> Iterator[IO[bytes]]:
        with super().open(key, block_size=block_size) as handle:
            yield _Counting(handle, self)


class _Counting:
    def __init__(self, handle: IO[bytes], owner: _CountingStorage) -> None:
        self._handle = handle
        self._owner = owner

    def readline(self) -> bytes:
        data = self._handle.readline()
        self._owner.bytes_read += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._owner.bytes_read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    root = tmp_path_factory.mktemp("big-archive")
    job_id = "job_bigarchive"
    size = _write_archive(Storage(str(root / "storage")), job_id, LINES)
    return root, job_id, size


def _store(root: Path, name: str) -> tuple[LogStore, _CountingStorage]:
    storage = _CountingStorage(str(root / "storage"))
    return LogStore(root / name, archive=storage), storage


def test_reads_after_an_id_stream_the_archive(big_archive: tuple[Path, str, int]) -> None:
    root, job_id, size = big_archive
    logs, storage = _store(root, "reader")
    tracemalloc.start()
    try:
        picked = logs.read_after(job_id, 123_456, limit=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [line.id for line in picked] == list(range(123_457, 123_462))
    assert picked[0] == _line(123_457)
    assert peak < size / 20, (peak, size)  # streamed: a small part of the object in memory
    assert [line.id for line in logs.read_after(job_id, LINES - 2)] == [LINES - 1, LINES]
    assert logs.read_after(job_id, LINES) == []
    assert logs.read_after(job_id, 0, limit=2) == [_line(1), _line(2)]
    # the next batch continues where the previous one stopped
    logs.read_after(job_id, 150_000, limit=500)
    before = storage.bytes_read
    following = logs.read_after(job_id, 150_500, limit=500)
    assert [line.id for line in following] == list(range(150_501, 151_001))
    assert storage.bytes_read - before < 500 * 200


def test_count_and_tail_read_the_end_only(big_archive: tuple[Path, str, int]) -> None:
    root, job_id, size = big_archive
    logs, storage = _store(root, "tail")
    assert logs.count(job_id) == LINES
    assert [line.id for line in logs.tail(job_id, 3)] == [LINES - 2, LINES - 1, LINES]
    assert [line.id for line in logs.tail(job_id, 5000)] == list(range(LINES - 4999, LINES + 1))
    assert logs.tail(job_id, 0) == []
    assert storage.bytes_read < size / 10
    # a follower starting at the tail (what SSE without Last-Event-ID does) reads on from it
    before = storage.bytes_read
    assert [line.id for line in logs.read_after(job_id, LINES - 100)] == list(
        range(LINES - 99, LINES + 1)
    )
    assert storage.bytes_read - before < 100_000
    # so does a resume deep inside the log (bisected, not scanned)
    before = storage.bytes_read
    assert [line.id for line in logs.read_after(job_id, 54_321, limit=1)] == [54_322]
    assert storage.bytes_read - before < 100_000


def test_a_follower_of_an_archived_job_gets_every_id_after_its_resume_point(
    big_archive: tuple[Path, str, int],
) -> None:
    root, job_id, size = big_archive
    logs, storage = _store(root, "follow")

    async def finished() -> bool:
        return True

    async def follow() -> list[int]:
        return [line.id async for line in logs.follow(job_id, 170_000, finished)]

    assert asyncio.run(follow()) == list(range(170_001, LINES + 1))
    assert storage.bytes_read < size / 5  # batch after batch from the resume point on


def test_an_archive_on_s3_is_read_streaming(s3: S3, tmp_path: Path) -> None:
    storage = Storage(f"s3://{BUCKET}/{tmp_path.name}", s3.options)
    job_id = "job_s3stream"
    _write_archive(storage, job_id, 30_000)
    logs = LogStore(tmp_path / "jobs", archive=storage)
    picked = logs.read_after(job_id, 12_345, limit=3)
    assert [line.id for line in picked] == [12_346, 12_347, 12_348]
    assert logs.count(job_id) == 30_000
    assert [line.id for line in logs.tail(job_id, 2)] == [29_999, 30_000]
    assert logs.read_after(job_id, 29_999) == [_line(30_000)]


# -- two replicas on one database: the archive moves the lines under a reader ----------------


@pytest.fixture
def replicas(database_url_factory: Any, tmp_path: Path) -> Iterator[tuple[LogStore, LogStore]]:
    db = Database(database_url_factory("postgres"))
    db.upgrade()
    storage = Storage(str(tmp_path / "storage"))
    a = LogStore(tmp_path / "a", db=db, archive=storage)
    b = LogStore(tmp_path / "b", db=db, archive=storage)
    yield a, b
    db.dispose()


def test_a_replica_that_just_found_no_archive_still_reads_the_archived_lines(
    replicas: tuple[LogStore, LogStore],
) -> None:
    a, b = replicas
    job_id = f"job_moving{uuid.uuid4().hex[:12]}"
    assert b.read_after(job_id, 0) == []  # no line yet: B has just seen "no archive"
    assert b.count(job_id) == 0
    a.append_lines(job_id, ["one", "two", "three"], "output")
    assert a.archive(job_id)  # the archive written, then the rows dropped
    assert [line.text for line in b.read_after(job_id, 0)] == ["one", "two", "three"]
    assert b.count(job_id) == 3
    assert [line.text for line in b.tail(job_id, 2)] == ["two", "three"]


def test_a_follower_whose_job_is_archived_under_it_gets_the_remaining_lines(
    replicas: tuple[LogStore, LogStore],
) -> None:
    """B follows A's job and has seen lines 1-3; when B finds nothing new and asks whether the
    job ended, A (at that very point) writes lines 4-6, ends the job and archives it. B's
    last read must find 4-6 in the archive although its own cache says it is at the end."""
    a, b = replicas
    job_id = f"job_follow{uuid.uuid4().hex[:12]}"
    a.append_lines(job_id, ["1", "2", "3"], "output")
    calls = 0

    async def finished() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            a.append_lines(job_id, ["4", "5", "6"], "output")
            assert a.archive(job_id)
        return True

    async def follow() -> list[tuple[int, str]]:
        return [(line.id, line.text) async for line in b.follow(job_id, 0, finished)]

    assert asyncio.run(follow()) == [(i, str(i)) for i in range(1, 7)]
    assert calls == 1
