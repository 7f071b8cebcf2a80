"""Safe unpacking of uploaded zip and tar archives (plain, gzip, bz2 or xz), with limits.

Shared by the jobs' code packages and the registry's archive uploads; pure (no store, no
settings), so both domain packages can use it without importing each other.

``unpack_archive`` refuses, with ``InvalidArgument`` naming the member: absolute names,
``..`` components, backslashes and NULs, symlinks and hard links (never needed inside an
upload, and the classic escape), device files and FIFOs, and archives whose member count or
total uncompressed size exceed the limits (zip bombs; a zip's declared sizes are checked
before anything is written, and the bytes actually written are counted too, since
declarations can lie). Members are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a
member can neither overwrite another nor write through a link. On any error the caller
removes ``dest`` (it should be a fresh directory).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import IO

from ml_platform.core.errors import InvalidArgument

CHUNK_BYTES = 1024 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_TAR_HEADER = 512
_RATIO_CHECK_ABOVE = 1024 * 1024
"""Members smaller than this are never refused for their compression ratio alone."""


class ArchiveKind(str, Enum):
    ZIP = "zip"
    TAR = "tar"


@dataclass(frozen=True)
class ArchiveLimits:
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_files: int = 10_000
    max_compression_ratio: int = 200
    """Per zip member above 1 MiB: a bomb compresses a huge run of zeros into a few bytes."""


@dataclass(frozen=True)
class UnpackedArchive:
    files: int
    """Regular files and directories created."""
    unpacked_bytes: int


def archive_kind(path: Path) -> ArchiveKind | None:
    """What ``path`` is by its content: a zip, a tar (plain or compressed), or neither.

    A gzip/bz2/xz stream is a tar only when its first decompressed block is a valid tar
    header, so a compressed joblib file (gzip around a pickle) is not taken for an archive.
    """
    with open(path, "rb") as reader:
        head = reader.read(_TAR_HEADER)
    if head[:4] in _ZIP_MAGIC:
        return ArchiveKind.ZIP
    if head.startswith((_GZIP_MAGIC, _BZ2_MAGIC, _XZ_MAGIC)):
        head = _decompressed_head(path, head)
    return ArchiveKind.TAR if _is_tar_header(head) else None


def _decompressed_head(path: Path, head: bytes) -> bytes:
    codec = gzip if head.startswith(_GZIP_MAGIC) else bz2 if head.startswith(_BZ2_MAGIC) else lzma
    try:
        with codec.open(path, "rb") as stream:
            return bytes(stream.read(_TAR_HEADER))
    except (OSError, EOFError, lzma.LZMAError):
        return b""


def _is_tar_header(block: bytes) -> bool:
    if len(block) < _TAR_HEADER or not block.strip(b"\0"):
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def unpack_archive(
    source: bytes | Path, dest: Path, limits: ArchiveLimits, *, label: str = "archive"
) -> UnpackedArchive:
    """Unpack a zip or tar archive (bytes or a local file) into the directory ``dest``.

    ``label`` names the upload in error messages ("code package", "model archive").
    Raises ``InvalidArgument`` for anything unsafe, corrupt, or over ``limits``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as stream:
        if stream.read(4) in _ZIP_MAGIC:
            stream.seek(0)
            return _Unpacker(dest, limits, label).zip(stream)
        stream.seek(0)
        try:
            archive = tarfile.open(fileobj=stream, mode="r:*")  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
            raise InvalidArgument(f"{label} must be a .zip or .tar.gz archive") from exc
        with archive:
            return _Unpacker(dest, limits, label).tar(archive)


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member name, refusing any that could escape."""
    if "\x00" in name or "\\" in name:
        raise InvalidArgument(f"archive member {name!r} has an invalid name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidArgument(f"archive member {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise InvalidArgument(f"archive member {name!r} escapes the archive ('..')")
    return parts


class _Unpacker:
    def __init__(self, dest: Path, limits: ArchiveLimits, label: str) -> None:
        self.dest = dest
        self.limits = limits
        self.label = label
        self.files = 0
        self.bytes = 0

    def _result(self) -> UnpackedArchive:
        return UnpackedArchive(self.files, self.bytes)

    def _too_many(self) -> InvalidArgument:
        return InvalidArgument(f"{self.label} has more than {self.limits.max_files} files")

    def _too_big(self, name: str) -> InvalidArgument:
        return InvalidArgument(
            f"{self.label} unpacks to more than {self.limits.max_unpacked_bytes} bytes "
            f"(stopped at {name!r})"
        )

    def _count(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise self._too_many()

    def _directory(self, parts: tuple[str, ...], name: str) -> None:
        self._count()
        if not parts:
            return
        try:
            self.dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"archive member {name!r} conflicts with another") from exc

    def _file(self, parts: tuple[str, ...], source: IO[bytes], name: str, mode: int) -> None:
        self._count()
        parent = self.dest.joinpath(*parts[:-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(parent / parts[-1], flags, 0o755 if mode & 0o111 else 0o644)
        except OSError as exc:
            raise InvalidArgument(f"archive member {name!r} conflicts with another") from exc
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_unpacked_bytes:
                    raise self._too_big(name)
                out.write(chunk)

    def zip(self, stream: IO[bytes]) -> UnpackedArchive:
        try:
            archive = zipfile.ZipFile(stream)
        except zipfile.BadZipFile as exc:
            raise InvalidArgument(f"{self.label} is not a valid zip archive") from exc
        with archive:
            infos = archive.infolist()
            if len(infos) > self.limits.max_files:
                raise self._too_many()
            declared = sum(info.file_size for info in infos)
            if declared > self.limits.max_unpacked_bytes:
                raise InvalidArgument(
                    f"{self.label} unpacks to {declared} bytes; the limit is "
                    f"{self.limits.max_unpacked_bytes}"
                )
            for info in infos:
                self._zip_member(archive, info)
        return self._result()

    def _zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        name = info.filename
        parts = member_parts(name)
        unix_mode = info.external_attr >> 16
        file_type = stat.S_IFMT(unix_mode)
        if file_type == stat.S_IFLNK:
            raise InvalidArgument(f"archive member {name!r} is a symlink")
        if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
            raise InvalidArgument(f"archive member {name!r} is not a regular file")
        if info.is_dir():
            self._directory(parts, name)
            return
        if not parts:
            return
        ratio = self.limits.max_compression_ratio
        if (
            info.compress_size
            and info.file_size > _RATIO_CHECK_ABOVE
            and info.file_size / info.compress_size > ratio
        ):
            raise InvalidArgument(f"archive member {name!r} has a suspicious compression ratio")
        try:
            with archive.open(info) as source:
                self._file(parts, source, name, unix_mode)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
            raise InvalidArgument(f"archive member {name!r} is corrupt or encrypted") from exc

    def tar(self, archive: tarfile.TarFile) -> UnpackedArchive:
        try:
            for member in archive:
                self._tar_member(archive, member)
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
            raise InvalidArgument(f"{self.label} is corrupt ({exc.__class__.__name__})") from exc
        return self._result()

    def _tar_member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = member_parts(name)
        if member.issym() or member.islnk():
            raise InvalidArgument(f"archive member {name!r} is a link")
        if member.isdir():
            self._directory(parts, name)
            return
        if not member.isreg():
            raise InvalidArgument(f"archive member {name!r} is not a regular file or directory")
        if not parts:
            return
        if self.bytes + member.size > self.limits.max_unpacked_bytes:
            raise self._too_big(name)
        source = archive.extractfile(member)
        if source is None:  # pragma: no cover - regular members always have data
            return
        with source:
            self._file(parts, source, name, member.mode)
