"""Ended jobs' archived logs: one JSON-lines object per job, written and read as streams.

``logs/jobs/<job_id>.jsonl`` holds one ``LogLine.to_dict()`` per line, in id order (the ids the
lines had while live). An archive never changes once written, so what a reader learns of one
stays true: ``ArchiveReader`` remembers, per archive, its last line id and a few *marks*
``(line id, byte offset just after that line)``. A read after id ``N`` starts at the nearest
mark at or before ``N``; when that is far from ``N`` it bisects the byte range (ids grow with
the offset: seek, skip to the next line start, look at its id) down to a few KB, then reads
line by line, never the whole object. So a ``Last-Event-ID`` deep in a 1 GB log costs a few
dozen small reads, a follower reading an ended job's log batch after batch continues where
its last batch stopped, and ``tail`` reads the object backwards from its end, in blocks,
until it has the lines it wants.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING

from ml_platform.jobs.log_lines import LogLine

if TYPE_CHECKING:
    from ml_platform.storage import Storage

ARCHIVE_PREFIX = "logs/jobs/"
MARK_EVERY_LINES = 10_000
"""A read that skips lines leaves a mark this often, so the next read skips less."""
MAX_MARKS = 512
MAX_ARCHIVES = 256
TAIL_BLOCK_BYTES = 64 * 1024
_MAX_TAIL_BLOCK_BYTES = 8 * 1024 * 1024
_ENCODE_BATCH = 1000
READ_BLOCK_BYTES = 256 * 1024
"""What one request to an object store fetches (S3's default, 50 MiB, per seek would make a
bisection move gigabytes)."""
BISECT_ABOVE_BYTES = 256 * 1024
"""A read whose nearest mark is further than this from the object's end bisects first..."""
BISECT_STOP_BYTES = 16 * 1024
"""...down to a range this small, which it then reads line by line."""
_ID_PREFIX = b'{"id":'


def archive_key(job_id: str) -> str:
    """The object a job's archived log is (job ids are unique across tenants)."""
    if not job_id or "/" in job_id or job_id in {".", ".."} or "\x00" in job_id:
        raise ValueError(f"invalid job id {job_id!r}")
    return f"{ARCHIVE_PREFIX}{job_id}.jsonl"


def encode(lines: Iterable[LogLine]) -> Iterator[bytes]:
    """The archive's bytes, in chunks of ``_ENCODE_BATCH`` lines (``lines`` may be a stream)."""
    batch: list[str] = []
    for line in lines:
        batch.append(json.dumps(line.to_dict(), ensure_ascii=False, separators=(",", ":")))
        if len(batch) >= _ENCODE_BATCH:
            yield ("\n".join(batch) + "\n").encode()
            batch.clear()
    if batch:
        yield ("\n".join(batch) + "\n").encode()


def decode(raw: bytes) -> LogLine:
    record = json.loads(raw)
    stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
    return LogLine(int(record["id"]), stamp, str(record["stream"]), str(record["line"]))


def line_id(raw: bytes) -> int:
    """The id of an archived line without decoding all of it (``encode`` writes it first)."""
    if raw.startswith(_ID_PREFIX):
        end = raw.find(b",", len(_ID_PREFIX))
        digits = raw[len(_ID_PREFIX) : end]
        if end > 0 and digits.isdigit():
            return int(digits)
    return int(json.loads(raw)["id"])


class _Index:
    """What one read learned of an archive: its last id, and marks ``(id, offset after it)``."""

    __slots__ = ("ids", "last_id", "offsets")

    def __init__(self) -> None:
        self.ids: list[int] = [0]
        self.offsets: list[int] = [0]
        self.last_id: int | None = None

    def mark_before(self, after_id: int) -> tuple[int, int]:
        """The nearest mark at or before ``after_id``: (its id, its offset)."""
        at = bisect.bisect_right(self.ids, after_id) - 1
        return self.ids[at], self.offsets[at]

    def mark(self, after_line: int, offset: int) -> None:
        at = bisect.bisect_left(self.ids, after_line)
        if at < len(self.ids) and self.ids[at] == after_line:
            return
        self.ids.insert(at, after_line)
        self.offsets.insert(at, offset)
        if len(self.ids) > MAX_MARKS:  # keep every other mark (and the start)
            self.ids[1:] = self.ids[2::2]
            self.offsets[1:] = self.offsets[2::2]


class ArchiveReader:
    """Streaming reads of archived logs in one storage; safe to share between threads."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, _Index] = OrderedDict()

    def known(self, job_id: str) -> bool:
        """Whether this reader has read the job's archive before (so it exists)."""
        with self._lock:
            return job_id in self._indexes

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._indexes.pop(job_id, None)

    def after(self, job_id: str, after_id: int, limit: int | None = None) -> list[LogLine] | None:
        """Archived lines with ``id > after_id``, at most ``limit``; None when there is no
        archive. Starts at the nearest mark (bisecting on when it is far), line by line."""
        if limit is not None and limit <= 0:
            return [] if self._exists(job_id) else None
        with self._lock:
            index = self._indexes.get(job_id)
            start_id, offset = index.mark_before(after_id) if index else (0, 0)
        found: list[LogLine] = []
        marks: list[tuple[int, int]] = []
        current, position, skipped, at_end = start_id, offset, 0, False
        try:
            with self._storage.open(archive_key(job_id), block_size=READ_BLOCK_BYTES) as handle:
                handle.seek(0, 2)
                end = handle.tell()
                if start_id != after_id and end - offset > BISECT_ABOVE_BYTES:
                    start_id, offset = _bisect(handle, after_id, start_id, offset, end)
                    marks.append((start_id, offset))
                handle.seek(offset)
                current, position = start_id, offset
                while True:
                    raw = handle.readline()
                    if not raw:
                        at_end = True
                        break
                    position += len(raw)
                    if not raw.strip():
                        continue
                    current = line_id(raw)
                    if current <= after_id:
                        skipped += 1
                        if skipped % MARK_EVERY_LINES == 0:
                            marks.append((current, position))
                        continue
                    found.append(decode(raw))
                    if limit is not None and len(found) >= limit:
                        break
        except FileNotFoundError:
            self.forget(job_id)
            return None
        marks.append((current, position))
        self._learn(job_id, marks, current if at_end else None)
        return found

    def last_id(self, job_id: str) -> int | None:
        """The id of the archive's last line; None when there is no archive."""
        with self._lock:
            index = self._indexes.get(job_id)
            if index is not None and index.last_id is not None:
                return index.last_id
        lines = self.tail(job_id, 1)
        if lines is None:
            return None
        return lines[-1].id if lines else 0

    def tail(self, job_id: str, n: int) -> list[LogLine] | None:
        """The archive's last ``n`` lines, read backwards from its end in growing blocks;
        None when there is no archive."""
        try:
            with self._storage.open(archive_key(job_id), block_size=READ_BLOCK_BYTES) as handle:
                picked, first_offset = _read_tail(handle, max(n, 0))
        except FileNotFoundError:
            self.forget(job_id)
            return None
        if not picked:
            self._learn(job_id, [], None)
            return []
        lines = [decode(raw) for raw in picked]
        self._learn(job_id, [(lines[0].id - 1, first_offset)], lines[-1].id)
        return lines

    # -- internals --------------------------------------------------------------------------

    def _exists(self, job_id: str) -> bool:
        return self.known(job_id) or self._storage.file_size(archive_key(job_id)) is not None

    def _learn(self, job_id: str, marks: list[tuple[int, int]], last_id: int | None) -> None:
        with self._lock:
            index = self._indexes.get(job_id)
            if index is None:
                index = self._indexes[job_id] = _Index()
                while len(self._indexes) > MAX_ARCHIVES:
                    self._indexes.popitem(last=False)
            else:
                self._indexes.move_to_end(job_id)
            for after_line, offset in marks:
                index.mark(after_line, offset)
            if last_id is not None:
                index.last_id = last_id


def _bisect(handle: IO[bytes], after_id: int, low_id: int, low: int, end: int) -> tuple[int, int]:
    """A mark ``(id, offset)`` at or before the first line with an id above ``after_id``,
    within ``BISECT_STOP_BYTES`` of it, found between the mark ``(low_id, low)`` and ``end``.
    ``low`` always starts a line and every line before it has an id <= ``after_id``."""
    high = end
    while high - low > BISECT_STOP_BYTES:
        middle = (low + high) // 2
        handle.seek(middle)
        start = middle + len(handle.readline())  # the rest of the line ``middle`` falls in
        raw = handle.readline()
        if not raw.strip():
            high = middle
            continue
        probe = line_id(raw)
        if probe <= after_id:
            low_id, low = probe, start + len(raw)
        else:
            high = middle
    return low_id, low


def _read_tail(handle: IO[bytes], n: int) -> tuple[list[bytes], int]:
    """The last ``n`` non-empty lines of a file and the offset of the first of them."""
    handle.seek(0, 2)
    end = handle.tell()
    if n == 0 or end == 0:
        return [], end
    block, begin, data = TAIL_BLOCK_BYTES, end, b""
    while begin > 0:
        step = min(block, begin)
        begin -= step
        handle.seek(begin)
        data = handle.read(step) + data
        # past the first newline every line is whole: enough of them?
        if data.count(b"\n") > n:
            break
        block = min(block * 2, _MAX_TAIL_BLOCK_BYTES)
    segments = data.split(b"\n")
    offsets = []
    position = begin
    for segment in segments:
        offsets.append(position)
        position += len(segment) + 1
    whole = range(1 if begin > 0 else 0, len(segments))  # a block start may cut a line
    kept = [i for i in whole if segments[i].strip()][-n:]
    return [segments[i] for i in kept], (offsets[kept[0]] if kept else end)
