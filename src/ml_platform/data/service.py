"""The tenant's data area: ``<tenant root>/data/``, the files a job's ``data_path`` names.

A user uploads ``train.csv`` and names it ``data/train.csv`` in a job; they never learn the
server's directory layout (no response or error carries an absolute server path).

Safety, because job code of the same tenant may write into the tenant root too:

- every path is checked before it touches the disk: relative, ``/``-separated, no empty,
  ``.`` or ``..`` segment, no control or bidi characters, valid UTF-8, at most
  ``MAX_SEGMENTS`` segments of ``MAX_SEGMENT_BYTES`` and ``MAX_PATH_BYTES`` in all
  (``InvalidArgument`` naming ``path``);
- the disk is walked one directory at a time with ``O_NOFOLLOW`` relative to the previous
  directory's descriptor, so a symbolic link planted anywhere in the area is never followed
  (no check-then-use race);
- an upload streams into a temporary file in the target's own directory, is fsynced and then
  renamed over the target (readers see the old file or the new one, never half of one); a
  failed or oversized upload leaves nothing behind.

Files carry their SHA-256 in a ``user.mlp.sha256`` extended attribute (``<hex>:<size>:
<mtime_ns>``), written at upload; a file changed since (or on a file system without xattrs)
is hashed again when listed. Listing shows regular files only, ordered by path.

Deleting a directory is not supported (409): delete its files; directories left empty by a
delete are removed.

Every file uploaded through the area is charged to the tenant's storage quota
(``max_storage_bytes``, ``ml_platform.governance.storage_ledger``): an upload declared larger
than what the tenant may still store, or a stream that passes it, is refused (429
``QUOTA_EXCEEDED``) before anything is published, and the scratch file goes; the publish
itself (rename or commit) happens inside the transaction that checks the quota and writes the
file's ``stored_objects`` row. An overwrite is charged its new size instead of the old one; a
delete drops the charge. Files a job writes into the area are not charged (nothing publishes
them through here).

With a remote storage (``ML_PLATFORM_STORAGE_URI=s3://...``) the area is
``<storage>/tenants/<tenant_id>/data/`` instead, the same objects every replica and every job
reads (``PathPolicy`` resolves ``data/...`` there). Uploads stream into a temporary object
published whole on commit (``ml_platform.storage``); each file's SHA-256 and size are kept
beside it in ``<storage>/tenants/<tenant_id>/.mlp-data-meta/<path>`` (a file whose size no
longer matches is hashed again). Object stores have no directories: a path is free unless a
file has that exact name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from ml_platform.core.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from ml_platform.governance.storage_ledger import StorageAllowance, StorageLedger, StoredObjectKind
from ml_platform.jobs.paths import PathPolicy
from ml_platform.storage import PendingObject, Storage, StoredObject

T = TypeVar("T")

__all__ = [
    "DATA_PREFIX",
    "MAX_PATH_BYTES",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_BYTES",
    "DataArea",
    "DataFileInfo",
    "DataFilePage",
    "DataFileReader",
    "DataUpload",
]

DATA_DIR = "data"
DATA_PREFIX = DATA_DIR + "/"  # what a job's data_path starts with (relative to the tenant root)
MAX_SEGMENTS = 32
MAX_SEGMENT_BYTES = 255  # NAME_MAX
MAX_PATH_BYTES = 1024
RESERVED_PREFIX = ".mlp-"  # temporary upload files; no user path segment may start with it
SHA_XATTR = "user.mlp.sha256"
READ_CHUNK = 1024 * 1024
_MAX_WALK_DEPTH = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_REJECTED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
UPLOAD_WHAT = "this upload"  # what a refused upload is called in the quota's problem


@dataclass(frozen=True)
class _Charge:
    """One file's charge to its tenant's storage quota (no ledger: nothing is charged)."""

    ledger: StorageLedger | None
    tenant_id: str
    key: str
    allowance: StorageAllowance | None = None

    def check(self, size: int, *, at_least: bool) -> None:
        """Refuse (429) when ``size`` bytes would not fit the allowance read at the start."""
        allowance = self.allowance
        if self.ledger is not None and allowance is not None and not allowance.admits(size):
            raise self.ledger.refuse(allowance.refusal(size, UPLOAD_WHAT, at_least=at_least))

    def publish(self, size: int, publish: Callable[[], T]) -> T:
        """``publish()`` the file charged ``size`` bytes, the quota checked first (locked)."""
        if self.ledger is None:
            return publish()
        return self.ledger.record(
            self.tenant_id, StoredObjectKind.DATA, self.key, size, publish, what=UPLOAD_WHAT
        )

    def forget(self, remove: Callable[[], None]) -> None:
        if self.ledger is None:
            remove()
        else:
            self.ledger.forget(self.tenant_id, StoredObjectKind.DATA, self.key, remove)


@dataclass(frozen=True)
class DataFileInfo:
    """A file of the data area, named as a job names it (``data/<path>``)."""

    path: str
    size_bytes: int
    sha256: str
    modified_at: datetime


@dataclass(frozen=True)
class DataFilePage:
    files: list[DataFileInfo]
    page: int
    page_size: int
    total: int

    @property
    def has_more(self) -> bool:
        return self.page * self.page_size < self.total


def _show(value: str) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _invalid(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {why}", [FieldViolation(field, why)])


def _check_characters(value: str, field: str) -> None:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, f"{_show(value)} is not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise _invalid(field, f"is {len(encoded)} bytes long; at most {MAX_PATH_BYTES} allowed")
    for char in value:
        if unicodedata.category(char) in _REJECTED_CATEGORIES or char in _BIDI_CONTROLS:
            raise _invalid(
                field, f"{_show(value)} contains the control character U+{ord(char):04X}"
            )
    if value.startswith("/"):
        raise _invalid(field, "must be relative to your data area (no leading '/')")
    if "\\" in value:
        raise _invalid(field, "separate directories with '/', not '\\'")


def _check_segment(segment: str, value: str, field: str) -> None:
    if segment == "":
        raise _invalid(field, f"{_show(value)} has an empty segment ('//')")
    if segment in (".", ".."):
        raise _invalid(field, f"{_show(value)} may not contain '.' or '..' segments")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise _invalid(field, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.startswith(RESERVED_PREFIX):
        raise _invalid(field, f"segments starting with {RESERVED_PREFIX!r} are reserved")


def parse_path(value: str, field: str = "path") -> tuple[str, ...]:
    """The segments of a file path inside the data area, or ``InvalidArgument`` naming ``field``."""
    if not value:
        raise _invalid(field, "name a file inside your data area, e.g. 'train.csv'")
    _check_characters(value, field)
    if value.endswith("/"):
        raise _invalid(field, f"{_show(value)} ends with '/': name a file, not a directory")
    parts = tuple(value.split("/"))
    if len(parts) > MAX_SEGMENTS:
        raise _invalid(field, f"has {len(parts)} segments; at most {MAX_SEGMENTS} allowed")
    for segment in parts:
        _check_segment(segment, value, field)
    return parts


def parse_prefix(value: str | None, field: str = "prefix") -> tuple[tuple[str, ...], str]:
    """(the directories a prefix names completely, the partial last name) of a list prefix."""
    if not value:
        return (), ""
    _check_characters(value, field)
    *dirs, partial = value.split("/")
    if len(dirs) >= MAX_SEGMENTS:
        raise _invalid(field, f"has more than {MAX_SEGMENTS} segments")
    for segment in dirs:
        _check_segment(segment, value, field)
    if partial in (".", ".."):
        raise _invalid(field, f"{_show(value)} may not contain '.' or '..' segments")
    return tuple(dirs), partial


def _shown_path(parts: tuple[str, ...] | list[str]) -> str:
    return DATA_PREFIX + "/".join(parts)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)


def _stamp(digest: str, st: os.stat_result) -> bytes:
    return f"{digest}:{st.st_size}:{st.st_mtime_ns}".encode()


def _file_sha256(fd: int, st: os.stat_result) -> str:
    """The stored digest when it still describes the file, else hash it (and store that)."""
    try:
        stored = os.getxattr(fd, SHA_XATTR).decode()
    except OSError:
        stored = ""
    digest, _, rest = stored.partition(":")
    if stored and rest == f"{st.st_size}:{st.st_mtime_ns}":
        return digest
    hasher = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, READ_CHUNK, offset):
        hasher.update(chunk)
        offset += len(chunk)
    digest = hasher.hexdigest()
    with contextlib.suppress(OSError):
        os.setxattr(fd, SHA_XATTR, _stamp(digest, st))
    return digest


class DataUpload:
    """One upload in progress: bytes go to a temporary file beside the target."""

    def __init__(
        self,
        parts: tuple[str, ...],
        dir_fds: list[int],
        tmp_name: str,
        fd: int,
        limit: int,
        charge: _Charge,
    ) -> None:
        self._parts = parts
        self._dir_fds = dir_fds
        self._dir_fd = dir_fds[-1]
        self._tmp_name = tmp_name
        self._fd: int | None = fd
        self._limit = limit
        self._charge = charge
        self._hasher = hashlib.sha256()
        self.size = 0
        self._done = False

    @property
    def path(self) -> str:
        return _shown_path(self._parts)

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{self.path}: the upload is larger than the {self._limit}-byte limit "
            "(ML_PLATFORM_MAX_DATA_UPLOAD_BYTES)"
        )

    def check_received(self, total: int) -> None:
        """Refuse (429 ``QUOTA_EXCEEDED``) as soon as ``total`` bytes received pass what the
        tenant may still store; past the size limit the 413 answers instead."""
        if total <= self._limit:
            self._charge.check(total, at_least=True)

    def _admit(self, chunk: bytes) -> None:
        """Before ``chunk`` is written: the size limit (413), then the quota (429); either
        aborts the upload."""
        total = self.size + len(chunk)
        if total > self._limit:
            self.abort()
            raise self.too_large()
        try:
            self.check_received(total)
        except BaseException:
            self.abort()
            raise

    def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise Conflict(f"{self.path}: the upload is already finished")
        self._admit(chunk)
        view = memoryview(chunk)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Unavailable(
                    f"{self.path}: the server has no space left for uploads; try again later "
                    "or ask an administrator"
                ) from None
            raise
        self._hasher.update(chunk)
        self.size += len(chunk)

    def commit(self) -> tuple[DataFileInfo, bool]:
        """Make the file visible under its name; returns (the file, whether it is new)."""
        if self._fd is None:
            raise Conflict(f"{self.path}: the upload is already finished")
        fd, name = self._fd, self._parts[-1]
        try:
            os.fsync(fd)
            st = os.fstat(fd)
            digest = self._hasher.hexdigest()
            with contextlib.suppress(OSError):
                os.setxattr(fd, SHA_XATTR, _stamp(digest, st))
            created = self._charge.publish(st.st_size, lambda: self._publish(name))
        finally:
            self.abort()
        return DataFileInfo(self.path, st.st_size, digest, _mtime(st)), created

    def _publish(self, name: str) -> bool:
        """Rename the temporary file over the target; whether nothing was there before."""
        created = self._make_room(name)
        os.rename(self._tmp_name, name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        self._done = True
        with contextlib.suppress(OSError):
            os.fsync(self._dir_fd)
        return created

    def _make_room(self, name: str) -> bool:
        """True when nothing is there yet; an empty directory of that name goes away."""
        try:
            existing = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        if stat.S_ISDIR(existing.st_mode):
            try:
                os.rmdir(name, dir_fd=self._dir_fd)
            except OSError:
                raise Conflict(
                    f"{self.path} is a directory of files; choose another name or delete "
                    "its files first"
                ) from None
            return True
        return False

    def abort(self) -> None:
        """Close everything; remove the temporary file unless it became the target."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            if not self._done:
                with contextlib.suppress(OSError):
                    os.unlink(self._tmp_name, dir_fd=self._dir_fd)
            _close_all(self._dir_fds)
            self._dir_fds = []


class DataFileReader:
    """An open file of the data area: its description and its bytes, in chunks."""

    def __init__(self, info: DataFileInfo, fd: int) -> None:
        self.info = info
        self._fd: int | None = fd

    def chunks(self) -> Iterator[bytes]:
        try:
            while self._fd is not None and (chunk := os.read(self._fd, READ_CHUNK)):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class _StoredUpload(DataUpload):
    """An upload into a remote storage: a pending object, published on commit."""

    def __init__(
        self,
        parts: tuple[str, ...],
        area: _StoredArea,
        pending: PendingObject,
        limit: int,
        charge: _Charge,
    ) -> None:
        self._parts = parts
        self._area = area
        self._pending: PendingObject | None = pending
        self._limit = limit
        self._charge = charge
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self._pending is None:
            raise Conflict(f"{self.path}: the upload is already finished")
        self._admit(chunk)
        self._pending.write(chunk)
        self.size += len(chunk)

    def commit(self) -> tuple[DataFileInfo, bool]:
        if self._pending is None:
            raise Conflict(f"{self.path}: the upload is already finished")
        pending, self._pending = self._pending, None

        def publish() -> StoredObject:
            stored = pending.commit()
            self._area.record(self._parts, stored.sha256, stored.size_bytes)
            return stored

        try:
            created = not self._area.storage.exists(pending.key)
            stored = self._charge.publish(self.size, publish)
        finally:
            pending.abort()
        return self._area.info(self._parts, stored.sha256, stored.size_bytes), created

    def abort(self) -> None:
        if self._pending is not None:
            self._pending.abort()
            self._pending = None


class _StoredReader(DataFileReader):
    """A file of a remote data area, streamed from the storage."""

    def __init__(self, info: DataFileInfo, storage: Storage, key: str) -> None:
        self.info = info
        self._storage = storage
        self._key = key
        self._closed = False

    def chunks(self) -> Iterator[bytes]:
        try:
            if self._closed:
                return
            with self._storage.open(self._key) as handle:
                while not self._closed and (chunk := handle.read(READ_CHUNK)):
                    yield chunk
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True


@dataclass(frozen=True)
class _StoredArea:
    """One tenant's data area in a remote storage."""

    storage: Storage
    tenant_id: str

    def key(self, parts: tuple[str, ...] | list[str]) -> str:
        return f"tenants/{self.tenant_id}/{DATA_DIR}/{'/'.join(parts)}"

    def meta_key(self, parts: tuple[str, ...] | list[str]) -> str:
        return f"tenants/{self.tenant_id}/{RESERVED_PREFIX}data-meta/{'/'.join(parts)}"

    def record(self, parts: tuple[str, ...], sha256: str, size: int) -> None:
        self.storage.put_bytes(self.meta_key(parts), f"{sha256} {size}\n".encode())

    def info(self, parts: tuple[str, ...], sha256: str, size: int) -> DataFileInfo:
        modified = self.storage.modified(self.key(parts))
        return DataFileInfo(_shown_path(parts), size, sha256, modified)

    def describe(self, parts: tuple[str, ...]) -> DataFileInfo:
        key = self.key(parts)
        size = self.storage.file_size(key)
        if size is None:  # missing, or a "directory" (a prefix of other files)
            raise NotFound(f"{_shown_path(parts)} not found in your data area")
        sha256 = ""
        with contextlib.suppress(OSError, ValueError):
            meta = self.storage.get_bytes(self.meta_key(parts)).decode()
            recorded, _, recorded_size = meta.strip().partition(" ")
            if recorded_size == str(size):
                sha256 = recorded
        if not sha256:  # written by a job, or changed since: hash it (and remember)
            hasher = hashlib.sha256()
            with self.storage.open(key) as handle:
                while chunk := handle.read(READ_CHUNK):
                    hasher.update(chunk)
            sha256 = hasher.hexdigest()
            self.record(parts, sha256, size)
        return self.info(parts, sha256, size)


def _delete_stored(stored: _StoredArea, parts: tuple[str, ...]) -> None:
    shown = _shown_path(parts)
    if stored.storage.file_size(stored.key(parts)) is None:
        if stored.storage.list(stored.key(parts)):
            raise Conflict(
                f"{shown} is a directory; delete its files one by one (list them with "
                f"GET /v1/data?prefix={'/'.join(parts)}/)"
            )
        raise NotFound(f"{shown} not found in your data area")
    stored.storage.delete(stored.key(parts))
    stored.storage.delete(stored.meta_key(parts))


class DataArea:
    """Upload, list, read and delete the files of each tenant's ``data/`` directory."""

    def __init__(
        self,
        paths: PathPolicy,
        max_upload_bytes: int,
        storage: Storage | None = None,
        ledger: StorageLedger | None = None,
    ) -> None:
        """``storage``: the platform's storage; used when the tenant area is remote in it.
        ``ledger``: charges uploads to the tenant's storage quota (None: nothing is charged)."""
        self._paths = paths
        self.max_upload_bytes = max_upload_bytes
        self._storage = storage
        self._ledger = ledger

    def _charge(self, tenant_id: str, parts: tuple[str, ...], *, upload: bool) -> _Charge:
        """The file's charge; for an upload with the allowance it starts with."""
        key = _shown_path(parts)
        if self._ledger is None or not upload:
            return _Charge(self._ledger, tenant_id, key)
        allowance = self._ledger.allowance(tenant_id, StoredObjectKind.DATA, key)
        return _Charge(self._ledger, tenant_id, key, allowance)

    def _stored(self, tenant_id: str) -> _StoredArea | None:
        if self._storage is None or self._storage.is_local:
            return None
        if self._paths.tenant_area_uri(tenant_id) is None:
            return None
        return _StoredArea(self._storage, tenant_id)

    # -- walking the disk without following links ----------------------------------------------

    def _open_area(self, tenant_id: str, create: bool) -> int | None:
        if create:
            root = self._paths.ensure_tenant_root(tenant_id)
            (root / DATA_DIR).mkdir(mode=0o700, exist_ok=True)
        else:
            root = self._paths.tenant_root(tenant_id)
        try:
            return os.open(root / DATA_DIR, _DIR_FLAGS)
        except FileNotFoundError:
            if create:
                raise
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Conflict(
                    "your data area is not a plain directory (a job replaced it?); "
                    "ask an administrator"
                ) from None
            raise

    def _open_dirs(
        self, tenant_id: str, dirs: tuple[str, ...], *, create: bool
    ) -> list[int] | None:
        """Descriptors of the area and each of ``dirs`` below it; None when one is missing.

        A segment that is a file or a symbolic link: None when reading, an error when writing.
        """
        area = self._open_area(tenant_id, create)
        if area is None:
            return None
        fds = [area]
        try:
            for depth, segment in enumerate(dirs):
                parent = fds[-1]
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, 0o700, dir_fd=parent)
                try:
                    fds.append(os.open(segment, _DIR_FLAGS, dir_fd=parent))
                except FileNotFoundError:
                    if create:
                        raise
                    _close_all(fds)
                    return None
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not create:
                        _close_all(fds)
                        return None
                    shown = _shown_path(dirs[: depth + 1])
                    if stat.S_ISLNK(os.stat(segment, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise _invalid(
                            "path", f"{shown} is a symbolic link; links are never followed"
                        ) from None
                    raise Conflict(f"{shown} is a file, not a directory") from None
        except BaseException:
            _close_all(fds)
            raise
        return fds

    # -- operations --------------------------------------------------------------------------

    def begin_upload(
        self, tenant_id: str, path: str, declared_size: int | None = None
    ) -> DataUpload:
        """Check the path and the declared size, then open a temporary file beside the target."""
        parts = parse_path(path)
        if declared_size is not None and declared_size > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"{_shown_path(parts)}: the upload is larger than the "
                f"{self.max_upload_bytes}-byte limit (ML_PLATFORM_MAX_DATA_UPLOAD_BYTES)"
            )
        charge = self._charge(tenant_id, parts, upload=True)
        if declared_size is not None:
            charge.check(declared_size, at_least=False)  # before any scratch file exists
        stored = self._stored(tenant_id)
        if stored is not None:
            pending = stored.storage.begin(stored.key(parts))
            return _StoredUpload(parts, stored, pending, self.max_upload_bytes, charge)
        for attempt in range(3):  # a concurrent delete may prune a directory we just made
            fds = self._open_dirs(tenant_id, parts[:-1], create=True)
            assert fds is not None
            tmp_name = f"{RESERVED_PREFIX}upload-{secrets.token_hex(8)}"
            try:
                fd = os.open(
                    tmp_name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=fds[-1],
                )
            except FileNotFoundError:
                _close_all(fds)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                _close_all(fds)
                raise
            return DataUpload(parts, fds, tmp_name, fd, self.max_upload_bytes, charge)
        raise AssertionError("unreachable")

    def open_file(self, tenant_id: str, path: str) -> DataFileReader:
        """The file's description and an open descriptor; ``NotFound`` unless a regular file."""
        parts = parse_path(path)
        stored = self._stored(tenant_id)
        if stored is not None:
            return _StoredReader(stored.describe(parts), stored.storage, stored.key(parts))
        missing = NotFound(f"{_shown_path(parts)} not found in your data area")
        fds = self._open_dirs(tenant_id, parts[:-1], create=False)
        if fds is None:
            raise missing
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1])
        except OSError:
            raise missing from None
        finally:
            _close_all(fds)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise missing
            info = DataFileInfo(_shown_path(parts), st.st_size, _file_sha256(fd, st), _mtime(st))
        except BaseException:
            os.close(fd)
            raise
        return DataFileReader(info, fd)

    def describe(self, tenant_id: str, path: str) -> DataFileInfo:
        reader = self.open_file(tenant_id, path)
        reader.close()
        return reader.info

    def delete(self, tenant_id: str, path: str) -> None:
        """Remove one file; directories it leaves empty go too. A directory itself: 409."""
        parts = parse_path(path)
        stored = self._stored(tenant_id)
        charge = self._charge(tenant_id, parts, upload=False)
        if stored is not None:
            charge.forget(lambda: _delete_stored(stored, parts))
        else:
            charge.forget(lambda: self._delete_local(tenant_id, parts))

    def _delete_local(self, tenant_id: str, parts: tuple[str, ...]) -> None:
        shown = _shown_path(parts)
        fds = self._open_dirs(tenant_id, parts[:-1], create=False)
        if fds is None:
            raise NotFound(f"{shown} not found in your data area")
        try:
            try:
                st = os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"{shown} not found in your data area") from None
            if stat.S_ISDIR(st.st_mode):
                raise Conflict(
                    f"{shown} is a directory; delete its files one by one (list them with "
                    f"GET /v1/data?prefix={'/'.join(parts)}/)"
                )
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"{shown} not found in your data area")
            try:
                os.unlink(parts[-1], dir_fd=fds[-1])
            except FileNotFoundError:
                raise NotFound(f"{shown} not found in your data area") from None
            for depth in range(len(parts) - 1, 0, -1):
                try:
                    os.rmdir(parts[depth - 1], dir_fd=fds[depth - 1])
                except OSError:
                    break
        finally:
            _close_all(fds)

    def list_files(
        self, tenant_id: str, prefix: str | None, *, page: int = 1, page_size: int = 50
    ) -> DataFilePage:
        """Regular files whose path (below ``data/``) starts with ``prefix``, ordered by path."""
        dirs, partial = parse_prefix(prefix)
        stored = self._stored(tenant_id)
        if stored is not None:
            return self._list_stored(stored, dirs, partial, page, page_size)
        fds = self._open_dirs(tenant_id, dirs, create=False)
        if fds is None:
            return DataFilePage([], page, page_size, 0)
        base = "/".join(dirs) + "/" if dirs else ""
        found: list[str] = []
        try:
            self._walk(fds[-1], base, partial, found, len(dirs))
        finally:
            _close_all(fds)
        found.sort()
        start = (page - 1) * page_size
        window = found[start : start + page_size]
        infos = []
        for rel in window:
            with contextlib.suppress(NotFound):  # deleted since the walk
                infos.append(self.describe(tenant_id, rel))
        return DataFilePage(infos, page, page_size, len(found))

    def _list_stored(
        self, stored: _StoredArea, dirs: tuple[str, ...], partial: str, page: int, page_size: int
    ) -> DataFilePage:
        area = stored.key(()).rstrip("/") + "/"
        base = "/".join(dirs) + "/" if dirs else ""
        found: list[str] = []
        for key in stored.storage.list(area + base.rstrip("/") if base else area.rstrip("/")):
            rel = key[len(area) :]
            if not rel.startswith(base + partial):
                continue
            try:
                parse_path(rel)
            except InvalidArgument:  # not nameable through the API (e.g. written by a job)
                continue
            found.append(rel)
        found.sort()
        start = (page - 1) * page_size
        infos = []
        for rel in found[start : start + page_size]:
            with contextlib.suppress(NotFound):  # deleted since the listing
                infos.append(stored.describe(parse_path(rel)))
        return DataFilePage(infos, page, page_size, len(found))

    def _walk(self, dir_fd: int, base: str, partial: str, out: list[str], depth: int) -> None:
        if depth > _MAX_WALK_DEPTH:
            return
        with os.scandir(dir_fd) as entries:
            children = list(entries)
        for entry in children:
            name = entry.name
            if name.startswith(RESERVED_PREFIX) or (partial and not name.startswith(partial)):
                continue
            rel = base + name
            try:
                parse_path(rel)
            except InvalidArgument:  # not nameable through the API (e.g. written by a job)
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    out.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        self._walk(child, rel + "/", "", out, depth + 1)
                    finally:
                        os.close(child)
            except OSError:  # changed under us
                continue
