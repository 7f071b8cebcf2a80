"""Per-job log store: one append-only file per job, each line timestamped and numbered.

A line's id is its 1-based line number in the job's file, so ids are stable across processes
and restarts: a follower that resumes from ``Last-Event-ID: 41`` reads line 42 onward, with
nothing lost and nothing repeated.

File format, one record per line: ``<RFC 3339 UTC timestamp> <stream> <text>``. Writers append
whole lines with a single ``write`` on an ``O_APPEND`` descriptor, so readers only ever see
complete lines (a trailing partial line is ignored until its newline arrives).

Followers in the same process are woken as soon as a line is written; writers in another
process (a separate scheduler) are picked up by polling at ``poll_interval``.

With a database (``LogStore(root, db=...)``, what the server uses) the lines are rows of
``job_log_lines`` instead of a file: every replica reads the lines of a job that another
replica's scheduler runs, while it runs and after, with the same ids (line numbers), so
``Last-Event-ID`` resumes work across replicas too. The server does so on PostgreSQL; on
SQLite (one machine by definition) it keeps the file form, as do tools and tests without a
store. With Redis (``fanout``) an append wakes the followers on every replica at once;
without it they poll. Lines may be appended inside another open transaction (the scheduler does): on
PostgreSQL that is a second connection writing another table, never a lock wait.

With an object store (``archive=Storage``, what the server passes), ``archive(job_id)``
streams an ended job's lines, page by page, into one JSON-lines object,
``logs/jobs/<job_id>.jsonl`` (each line's ``to_dict``: the same ids), then drops the live rows
/ file unless ``keep_live_after_archive``. Reads (count, tail, ``read_after``, ``follow``) of a
job whose live lines are gone are served from the archive, so ``Last-Event-ID`` resumes
exactly there too; they stream it (``log_archive.ArchiveReader``: seek to a remembered offset,
read line by line; ``tail`` reads backwards from the end), so a huge log never sits in memory.
A job's lines are archived once it is final (no more lines come).

Read order: the live lines first, the archive only when they are empty. The archive is
written before the live lines are dropped, so a read that finds no live line and then no
archive saw a job without lines (yet), never one whose lines are moving. One-shot reads
(``count``, ``tail``, ``read_after``) therefore always look at the archive when the live lines
are empty; only a follower's polls of a job still running may trust a "no archive" seen within
the last second, and its last read, after the job is known to be final, looks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from ml_platform.jobs.log_archive import ARCHIVE_PREFIX, ArchiveReader, archive_key, encode
from ml_platform.jobs.log_lines import LogLine
from ml_platform.store.job_runtime import JobLogLineRow, JobLogRepository, LogLineRecord

__all__ = ["ARCHIVE_PREFIX", "LogLine", "LogStore", "archive_key"]

if TYPE_CHECKING:
    from ml_platform.jobs.log_fanout import RedisLogFanout
    from ml_platform.storage import Storage
    from ml_platform.store.db import Database

MAX_LINE_CHARS = 16 * 1024
"""Longer lines are split: a job that prints megabytes without a newline stays readable."""

_MAX_CACHED_INDEXES = 512
_APPEND_ATTEMPTS = 8
_RECENT_LINES = 4096
_RECENT_JOBS = 256
_NO_ARCHIVE_SECONDS = 1.0
"""A follower's poll that found no archive for a job does not look again for this long (its
last read, once the job is final, always looks)."""
_ARCHIVE_PAGE_LINES = 5000
"""Archiving reads the live lines in pages of this many: never the whole log at once."""
_SHARED_READ_SECONDS = 0.05
"""A follower woken by its poll (not by a notification) reuses another follower's read of
the job's last line when it is at most this old."""


class _Index:
    """Byte offsets of the starts of the complete lines seen so far in one file."""

    __slots__ = ("last_read", "offsets", "scanned_to")

    def __init__(self) -> None:
        self.offsets: array[int] = array("q")
        self.scanned_to = 0
        self.last_read: tuple[int, int, list[LogLine]] | None = None
        """The last range read (start, stop, lines): the many followers of a job woken by
        one line read it once (a range of an append-only file never changes)."""


class _Recent:
    """The latest lines of one job this process saw (a contiguous run of ids), so that many
    followers of one job cost one database read per new batch, not one each."""

    __slots__ = ("generation", "lines", "verified_at")

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self.generation = -1
        """The wake-up generation at which ``last_id`` was known to be the job's last line."""
        self.verified_at = 0.0

    @property
    def last_id(self) -> int:
        return self.lines[-1].id if self.lines else 0

    def slice(self, after_id: int, limit: int | None) -> list[LogLine]:
        if not self.lines or after_id >= self.last_id or after_id + 1 < self.lines[0].id:
            return []
        start = after_id + 1 - self.lines[0].id
        return self.lines[start : None if limit is None else start + limit]

    def add(self, new: list[LogLine]) -> None:
        if not new:
            return
        if self.lines and new[0].id <= self.last_id + 1 <= new[-1].id:
            self.lines.extend(new[self.last_id + 1 - new[0].id :])
        elif not self.lines or new[0].id > self.last_id + 1:
            self.lines = list(new)
        if len(self.lines) > _RECENT_LINES:
            del self.lines[: len(self.lines) - _RECENT_LINES]


class LogStore:
    """Files under ``root/<job_id>/job.log``; safe to share between threads."""

    def __init__(
        self,
        root: Path,
        *,
        poll_interval: float = 0.25,
        db: Database | None = None,
        fanout: RedisLogFanout | None = None,
        archive: Storage | None = None,
        keep_live_after_archive: bool = False,
    ) -> None:
        """``fanout`` (with ``db``): wake followers on every replica through Redis the moment
        any replica appends, instead of at their next poll. ``archive``: the object store
        ended jobs' logs are archived to (see the module docstring)."""
        self._root = root
        self._archive = archive
        self._archives = ArchiveReader(archive) if archive is not None else None
        self._keep_live = keep_live_after_archive
        self._not_archived: dict[str, float] = {}
        self._poll_interval = poll_interval
        self._db = db
        self._fanout = fanout if db is not None else None
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, _Recent] = OrderedDict()
        self._read_locks: dict[str, threading.Lock] = {}
        self._generations: dict[str, int] = {}
        self._indexes: OrderedDict[str, _Index] = OrderedDict()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    @property
    def root(self) -> Path:
        return self._root

    def path(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id in {".", ".."} or "\x00" in job_id:
            raise ValueError(f"invalid job id {job_id!r}")
        return self._root / job_id / "job.log"

    # -- writing -------------------------------------------------------------------------

    def append(self, job_id: str, text: str, stream: str = "system") -> None:
        """Append ``text`` (split on newlines) to the job's log."""
        self.append_lines(job_id, text.split("\n"), stream)

    def append_lines(self, job_id: str, lines: list[str], stream: str) -> None:
        """Append ``lines`` (without newlines) in one write; wake the job's followers."""
        if not lines:
            return
        now = datetime.now(UTC)
        pieces: list[str] = []
        for raw in lines:
            clean = raw.replace("\r", "").replace("\n", " ")
            for start in range(0, max(len(clean), 1), MAX_LINE_CHARS):
                pieces.append(clean[start : start + MAX_LINE_CHARS])
        if self._db is not None:
            last = self._append_rows(job_id, [(now, stream, piece) for piece in pieces])
            self._notify(job_id, appended=True)
            if self._fanout is not None:
                self._fanout.publish(job_id, last)
            return
        stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        records = [f"{stamp} {stream} {piece}\n" for piece in pieces]
        data = "".join(records).encode("utf-8", errors="replace")
        path = self.path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._notify(job_id)

    def _append_rows(self, job_id: str, rows: list[tuple[datetime, str, str]]) -> int:
        """Number the lines after the job's last one and insert them in one transaction; a
        writer elsewhere that took the same numbers first makes us renumber and retry."""
        assert self._db is not None
        self.path(job_id)  # the same job id check as the file form
        with self._write_lock:
            for attempt in range(_APPEND_ATTEMPTS):
                try:
                    with self._db.transaction() as session:
                        repo = JobLogRepository(session)
                        first = repo.last_line_id(job_id) + 1
                        repo.append(job_id, first, rows)
                    lines = [
                        LogLine(first + i, created_at, stream, text)
                        for i, (created_at, stream, text) in enumerate(rows)
                    ]
                    with self._lock:
                        recent = self._recent_for(job_id)
                        verified = first == 1 or (
                            recent.last_id == first - 1
                            and recent.generation == self._generations.get(job_id, 0)
                        )
                        recent.add(lines)
                        generation = self._generations[job_id] = (
                            self._generations.get(job_id, 0) + 1
                        )
                        if verified:  # this process writes the job: its cache is whole
                            recent.generation = generation
                    return lines[-1].id
                except IntegrityError:
                    if attempt == _APPEND_ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    # -- reading -------------------------------------------------------------------------

    def count(self, job_id: str) -> int:
        """Number of complete lines stored for the job."""
        live = self._count_live(job_id)
        if live or self._archives is None:
            return live
        return self._archives.last_id(job_id) or 0

    def _count_live(self, job_id: str) -> int:
        if self._db is not None:
            with self._db.read() as session:
                return JobLogRepository(session).last_line_id(job_id)
        with self._lock:
            return len(self._refresh(job_id).offsets)

    def read_after(self, job_id: str, after_id: int = 0, limit: int | None = None) -> list[LogLine]:
        """Lines with ``id > after_id`` in order, at most ``limit`` of them."""
        if self._db is not None:
            lines = self._read_rows(job_id, max(after_id, 0), limit, fresh=True)
        else:
            lines = self._read_file(job_id, after_id, limit)
        return lines or self._archive_fallback(job_id, after_id, limit, recheck=True)

    def _read_file(self, job_id: str, after_id: int, limit: int | None) -> list[LogLine]:
        with self._lock:
            index = self._refresh(job_id)
            total = len(index.offsets)
            start = max(after_id, 0)
            if start >= total:
                return []
            stop = total if limit is None else min(total, start + max(limit, 0))
            if stop <= start:
                return []
            last = index.last_read
            if last is not None and last[0] == start and last[1] == stop:
                return list(last[2])
            begin = index.offsets[start]
            end = index.offsets[stop] if stop < total else index.scanned_to
        try:
            data = self._read_range(job_id, begin, end)
        except FileNotFoundError:  # archived (and removed) by another process
            self.forget(job_id)
            return []
        raw_lines = data.split(b"\n")
        lines = [_parse(start + i + 1, raw) for i, raw in enumerate(raw_lines[: stop - start])]
        with self._lock:
            index.last_read = (start, stop, lines)
        return list(lines)

    def tail(self, job_id: str, n: int) -> list[LogLine]:
        """The last ``n`` lines."""
        live = self._count_live(job_id)
        if live:
            return self.read_after(job_id, max(live - max(n, 0), 0))
        if self._archives is None:
            return []
        return self._archives.tail(job_id, n) or []

    async def follow(
        self,
        job_id: str,
        after_id: int,
        is_finished: Callable[[], Awaitable[bool]],
        *,
        batch: int = 500,
    ) -> AsyncIterator[LogLine]:
        """Yield lines after ``after_id`` as they arrive; end once the job is terminal and
        every line has been yielded (``follow_batches``, one line at a time)."""
        async for lines in self.follow_batches(job_id, after_id, is_finished, batch=batch):
            for line in lines:
                yield line

    async def follow_batches(
        self,
        job_id: str,
        after_id: int,
        is_finished: Callable[[], Awaitable[bool]],
        *,
        batch: int = 500,
    ) -> AsyncIterator[list[LogLine]]:
        """Like ``follow``, but each item is every line one read brought (never empty, in
        order, at most ``batch``): a follower that fell behind writes them at once.

        ``is_finished`` is asked before the final read, so a line written just before the job
        ended is never dropped. A read that brought fewer than ``batch`` lines is not repeated
        at once unless a wake-up came since it began (the waiter is registered before the read,
        so any line appended after it resolves the waiter).
        """
        cursor = after_id
        loop = asyncio.get_running_loop()
        if self._fanout is not None:
            self._fanout.listen(self._remote_lines)
        fresh = True  # the first read, and every read after a poll timeout, asks the store
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._add_waiter(job_id, loop, future)
            try:
                lines = await self._read_for_follower(job_id, cursor, batch, fresh=fresh)
                if lines:
                    yield lines
                    cursor = lines[-1].id
                    fresh = False
                    if len(lines) >= batch or future.done():
                        continue  # more may be there already
                if await is_finished():
                    # The job is over: drain whatever landed between the read and the check,
                    # looking at the archive whatever this process believed of it
                    while rest := await self._read_for_follower(job_id, cursor, batch, last=True):
                        yield rest
                        cursor = rest[-1].id
                    return
                fresh = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), self._poll_interval)
                    fresh = False  # woken by a notification: the cache knows what it brought
            finally:
                self._remove_waiter(job_id, loop, future)

    def _read_rows(
        self, job_id: str, after_id: int, limit: int | None, *, fresh: bool
    ) -> list[LogLine]:
        """Lines from the database, through the per-job cache. ``fresh=False`` (a follower
        woken by a notification) trusts the cache while no newer notification came."""
        if limit is not None and limit <= 0:
            return []
        with self._lock:
            hit = self._cached(job_id, after_id, limit, fresh=fresh)
            if hit is not None:
                return hit
            read_lock = self._read_locks.setdefault(job_id, threading.Lock())
        with read_lock:  # one database read per job at a time; the others reuse it
            with self._lock:
                hit = self._cached(job_id, after_id, limit, fresh=fresh, shared=True)
                if hit is not None:
                    return hit
                generation = self._generations.get(job_id, 0)
            with self._db.read() as session:  # type: ignore[union-attr]
                records = JobLogRepository(session).after(job_id, after_id, limit)
            lines = [_from_record(record) for record in records]
            with self._lock:
                recent = self._recent_for(job_id)
                recent.add(lines)
                reached_end = limit is None or len(lines) < limit
                if reached_end and recent.last_id == (lines[-1].id if lines else after_id):
                    recent.generation = generation
                    recent.verified_at = time.monotonic()
        return lines

    def _cached(
        self, job_id: str, after_id: int, limit: int | None, *, fresh: bool, shared: bool = False
    ) -> list[LogLine] | None:
        """The answer the cache holds, or None when the database must be asked (under lock)."""
        recent = self._recent.get(job_id)
        if recent is None:
            return None
        hit = recent.slice(after_id, limit)
        if hit:
            return hit
        if after_id != recent.last_id:
            return None
        if recent.generation != self._generations.get(job_id, 0):
            return None  # woken since the cache was known to be whole
        if not fresh:
            return []
        if shared and time.monotonic() - recent.verified_at <= _SHARED_READ_SECONDS:
            return []  # another follower just read the end
        return None

    def _recent_for(self, job_id: str) -> _Recent:
        recent = self._recent.get(job_id)
        if recent is None:
            recent = self._recent[job_id] = _Recent()
            while len(self._recent) > _RECENT_JOBS:
                evicted, _ = self._recent.popitem(last=False)
                self._read_locks.pop(evicted, None)
                self._generations.pop(evicted, None)
        else:
            self._recent.move_to_end(job_id)
        return recent

    async def _read_for_follower(
        self, job_id: str, after_id: int, batch: int, *, fresh: bool = True, last: bool = False
    ) -> list[LogLine]:
        """``last``: the job is final; an empty live read then always asks the archive (the
        lines may have moved there since this process last saw them live)."""
        if self._db is not None:  # a database round trip (unless cached): off the event loop
            with self._lock:
                hit = self._cached(job_id, after_id, batch, fresh=fresh)
            if hit is not None:
                return hit
            lines = await asyncio.to_thread(
                self._read_rows, job_id, max(after_id, 0), batch, fresh=fresh
            )
        else:
            # New lines are a few KB in the page cache: reading them inline is cheaper than a
            # thread hop, and keeps delivery latency low with many followers.
            lines = self._read_file(job_id, after_id, batch)
        if lines or not (last or self._may_be_archived(job_id, after_id)):
            return lines
        return await asyncio.to_thread(
            self._archive_fallback, job_id, after_id, batch, recheck=last
        )

    # -- the archive ------------------------------------------------------------------------

    def archive(self, job_id: str) -> bool:
        """Stream the job's lines into one object (call once the job is final), then drop the
        live copy unless told to keep it. False when there is no archive or nothing to
        archive; an existing archive is left as it is (the live copy is still dropped)."""
        if self._archive is None:
            return False
        key = archive_key(job_id)
        archived = False
        if not self._archive.exists(key):
            pages = self._live_pages(job_id)
            first = next(pages, None)
            if first is None:
                return False
            self._archive.put(key, encode(chain.from_iterable(chain([first], pages))))
            archived = True
        with self._lock:
            self._not_archived.pop(job_id, None)
        if not self._keep_live:
            self._drop_live(job_id)
        return archived

    def _live_pages(self, job_id: str) -> Iterator[list[LogLine]]:
        """The job's live lines in pages (not through the followers' cache)."""
        after = 0
        while True:
            if self._db is not None:
                with self._db.read() as session:
                    records = JobLogRepository(session).after(job_id, after, _ARCHIVE_PAGE_LINES)
                page = [_from_record(record) for record in records]
            else:
                page = self._read_file(job_id, after, _ARCHIVE_PAGE_LINES)
            if not page:
                return
            yield page
            after = page[-1].id

    def _drop_live(self, job_id: str) -> None:
        if self._db is not None:
            with self._db.transaction() as session:
                session.execute(delete(JobLogLineRow).where(JobLogLineRow.job_id == job_id))
            with self._lock:
                self._recent.pop(job_id, None)
            return
        self.path(job_id).unlink(missing_ok=True)
        self.forget(job_id)

    def _may_be_archived(self, job_id: str, after_id: int) -> bool:
        """Whether an empty live read of a running job's follower may hide archived lines:
        the process knows of no line past ``after_id`` (a follower at the end of a live job
        asks nothing more; its last read, once the job is final, always asks)."""
        if self._archives is None:
            return False
        if self._archives.known(job_id):
            return True
        with self._lock:
            recent = self._recent.get(job_id)
            return recent is None or not recent.lines or after_id < recent.last_id

    def _archive_fallback(
        self, job_id: str, after_id: int, limit: int | None, *, recheck: bool = False
    ) -> list[LogLine]:
        """The archived lines after ``after_id`` (the live read found none). ``recheck``:
        look even when a read of the last second found no archive (every one-shot read, and a
        follower's last one); otherwise a follower's poll trusts that answer."""
        if self._archives is None:
            return []
        if not recheck:
            with self._lock:
                checked = self._not_archived.get(job_id)
            if checked is not None and time.monotonic() - checked < _NO_ARCHIVE_SECONDS:
                return []
        lines = self._archives.after(job_id, max(after_id, 0), limit)
        with self._lock:
            if lines is None:
                self._not_archived[job_id] = time.monotonic()
                if len(self._not_archived) > _RECENT_JOBS:
                    self._not_archived.pop(next(iter(self._not_archived)))
                return []
            self._not_archived.pop(job_id, None)
        if lines and self._keep_live and self._count_live(job_id):
            return []  # the live copy was kept: it answered already
        return lines

    def forget(self, job_id: str) -> None:
        """Drop the cached index of a job (e.g. after its files were deleted)."""
        with self._lock:
            self._indexes.pop(job_id, None)

    # -- internals -----------------------------------------------------------------------

    def _refresh(self, job_id: str) -> _Index:
        index = self._indexes.get(job_id)
        if index is None:
            index = _Index()
            self._indexes[job_id] = index
            while len(self._indexes) > _MAX_CACHED_INDEXES:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(job_id)
        path = self.path(job_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return index
        if size <= index.scanned_to:
            return index
        with open(path, "rb") as handle:
            handle.seek(index.scanned_to)
            chunk = handle.read(size - index.scanned_to)
        position = index.scanned_to
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            index.offsets.append(position + start)
            start = newline + 1
        index.scanned_to = position + start
        return index

    def _read_range(self, job_id: str, begin: int, end: int) -> bytes:
        with open(self.path(job_id), "rb") as handle:
            handle.seek(begin)
            return handle.read(end - begin)

    def _add_waiter(
        self, job_id: str, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        with self._lock:
            self._waiters.setdefault(job_id, set()).add((loop, future))

    def _remove_waiter(
        self, job_id: str, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard((loop, future))
                if not waiters:
                    del self._waiters[job_id]
        if not future.done():
            future.cancel()

    def _notify(self, job_id: str, *, appended: bool = False) -> None:
        """Wake the job's followers here. Any wake-up but our own append (whose lines the
        cache already holds) may mean lines the cache does not know: a new generation."""
        with self._lock:
            if self._db is not None and job_id in self._recent and not appended:
                self._generations[job_id] = self._generations.get(job_id, 0) + 1
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for loop, future in self._waiters.get(job_id, ()):
                by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():  # one wake-up per event loop, not per follower
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # the follower's loop has closed
                continue

    def _remote_lines(self, job_id: str, last_line_id: int) -> None:
        """A replica appended lines of ``job_id`` up to ``last_line_id``: wake our followers
        unless our cache already holds that line (we wrote it ourselves)."""
        with self._lock:
            recent = self._recent.get(job_id)
            if recent is not None and last_line_id and recent.last_id >= last_line_id:
                return
        self._notify(job_id)

    def notify(self, job_id: str) -> None:
        """Wake followers of ``job_id`` (e.g. when the job reached a terminal state)."""
        self._notify(job_id)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _parse(line_id: int, raw: bytes) -> LogLine:
    text = raw.decode("utf-8", errors="replace")
    stamp, _, rest = text.partition(" ")
    stream, _, body = rest.partition(" ")
    try:
        timestamp = datetime.fromisoformat(stamp)
    except ValueError:
        timestamp = datetime.fromtimestamp(0, tz=UTC)
    return LogLine(id=line_id, timestamp=timestamp, stream=stream or "system", text=body)


def _from_record(record: LogLineRecord) -> LogLine:
    return LogLine(
        id=record.line_id, timestamp=record.created_at, stream=record.stream, text=record.text
    )
