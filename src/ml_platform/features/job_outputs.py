"""A feature source in a training job's output: a file the job published to its
``output_path``, found the way the registry finds a job's model file.

The job is looked up in the caller's tenant only (another tenant's job is "not found", as any
foreign resource) and must have succeeded: its outputs are published when it exits 0, so a
running or failed job has nothing final to read (409 naming its state). The job's
``output_path`` goes through the location policy (``jobs.paths.PathPolicy``) again at every
read, then:

- **local** outputs are opened below the resolved directory with ``O_NOFOLLOW``, after the
  real path is checked to stay inside it (a symbolic link the job left cannot point the
  platform elsewhere);
- **remote** outputs (``ML_PLATFORM_STORAGE_URI=s3://...``, or a prefix granted to the
  tenant) are read through the platform's storage or fsspec with its options, as the data
  area and the registry read them.

Either way the caller gets the file's size before any byte is read (``SourceReader`` bounds
it) and its bytes in chunks.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import fsspec  # type: ignore[import-untyped,unused-ignore]

from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound
from ml_platform.data.service import parse_path
from ml_platform.jobs.paths import PathPolicy
from ml_platform.storage import Storage
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository

__all__ = ["JobOutputs", "OpenedFile"]

READ_CHUNK = 1024 * 1024


class OpenedFile:
    """A file about to be read: its size now, then its bytes once (``chunks`` closes it)."""

    def __init__(self, size_bytes: int, opened: contextlib.AbstractContextManager[IO[bytes]]):
        self.size_bytes = size_bytes
        self._stack = contextlib.ExitStack()
        self._handle: IO[bytes] | None = self._stack.enter_context(opened)

    def chunks(self) -> Iterator[bytes]:
        try:
            while self._handle is not None and (chunk := self._handle.read(READ_CHUNK)):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        self._handle = None
        with contextlib.suppress(OSError):
            self._stack.close()


def _missing(job_id: str, path: str) -> NotFound:
    return NotFound(f"training job {job_id!r} has no file {path!r} in its output")


class JobOutputs:
    """Opens files of the outputs of a tenant's succeeded jobs."""

    def __init__(self, db: Database, paths: PathPolicy, storage: Storage) -> None:
        self._db = db
        self._paths = paths
        self._storage = storage

    def output_path(self, tenant_id: str, job_id: str) -> str:
        """The job's ``output_path``; ``NotFound`` outside the tenant, ``Conflict`` unless it
        succeeded."""
        with self._db.read() as session:
            job = JobRepository(session, tenant_id).succeeded(
                job_id, to_become="only a succeeded job's output can be a feature source"
            )
        return str(job.spec.get("output_path", ""))

    def open(
        self, tenant_id: str, job_id: str, path: str, field: str = "body.source.path"
    ) -> OpenedFile:
        parts = parse_path(path, field)
        output_path = self.output_path(tenant_id, job_id)
        resolved = self._paths.check_output_path(tenant_id, output_path, "body.source.job_id")
        relative = "/".join(parts)
        if resolved.local is not None:
            return _open_local(resolved.local, relative, job_id)
        key = self._storage.key_for_uri(resolved.uri)
        if key is not None:
            key = f"{key}/{relative}"
            size = self._storage.file_size(key)
            if size is None:
                raise _missing(job_id, relative)
            return OpenedFile(size, self._storage.open(key))
        fs, root = fsspec.core.url_to_fs(resolved.uri, **self._storage.options)
        target = f"{str(root).rstrip('/')}/{relative}"
        try:
            info = fs.info(target)
        except FileNotFoundError:
            raise _missing(job_id, relative) from None
        if info.get("type") != "file":
            raise _missing(job_id, relative)
        return OpenedFile(int(info.get("size") or 0), fs.open(target, "rb"))


def _open_local(root: Path, relative: str, job_id: str) -> OpenedFile:
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / relative))
    if not target.is_relative_to(base) or target == base:
        why = f"{relative!r} leaves training job {job_id!r}'s output (a symbolic link?)"
        raise InvalidArgument(why, [FieldViolation("body.source.path", why)])
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, a link planted since, a directory: the name only, never a path
        raise _missing(job_id, relative) from None
    handle = os.fdopen(fd, "rb")
    st = os.fstat(handle.fileno())
    if not stat.S_ISREG(st.st_mode):
        handle.close()
        raise _missing(job_id, relative)
    return OpenedFile(st.st_size, handle)
