"""A local staging area: incoming artifacts land here (hashed, size-limited) before the store.

Staging lets the registry check an artifact (format, signature, in a subprocess) before it
reaches the immutable store, and guarantees that a rejected or oversized upload leaves
nothing behind: the staged file is removed on every failure path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ml_platform.core.errors import PayloadTooLarge
from ml_platform.registry.artifacts import CHUNK_BYTES, StagedFile, safe_filename


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the artifact exceeds the {limit}-byte limit (ML_PLATFORM_MAX_UPLOAD_BYTES)"
    )


class StagingWriter:
    """Write chunks, then ``finish()``; ``abort()`` (or any exception) removes the file."""

    def __init__(self, path: Path, filename: str, max_bytes: int) -> None:
        self.path = path
        self.filename = filename
        self.max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if self._size + len(data) > self.max_bytes:
            self.abort()
            raise too_large(self.max_bytes)
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)

    def finish(self) -> StagedFile:
        self._file.close()
        return StagedFile(self.path, self.filename, self._digest.hexdigest(), self._size)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class StagingArea:
    def __init__(self, root: Path) -> None:
        self.root = root

    def writer(self, filename: str | None, max_bytes: int) -> StagingWriter:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = safe_filename(filename)
        return StagingWriter(self.root / f"{secrets.token_hex(8)}-{name}", name, max_bytes)

    def copy(self, reader: IO[bytes], filename: str | None, max_bytes: int) -> StagedFile:
        writer = self.writer(filename, max_bytes)
        try:
            while chunk := reader.read(CHUNK_BYTES):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    @contextlib.contextmanager
    def cleanup(self, staged: StagedFile) -> Iterator[StagedFile]:
        """Use a staged file, then remove it whatever happened."""
        try:
            yield staged
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.path.unlink()
