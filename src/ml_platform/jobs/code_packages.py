"""Content-addressed code packages: uploaded zip / tar.gz archives, unpacked safely.

A package is named by the SHA-256 of its archive bytes (``sha256:<hex>``), so uploading the
same archive twice stores it once. Each tenant that uploaded a package is recorded as an owner;
another tenant asking for it gets ``NotFound``, exactly as for a package that does not exist.

Unpacking refuses, with ``InvalidArgument``: absolute member names, ``..`` components,
symlinks or hard links (inside a package they are never needed and are the classic escape),
device files, FIFOs, and archives whose total uncompressed size or file count exceed the
limits (zip bombs). Members are written with ``O_EXCL | O_NOFOLLOW`` into a fresh directory,
then the directory is renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

from ml_platform.core.errors import InvalidArgument, NotFound, PayloadTooLarge

logger = logging.getLogger(__name__)

PACKAGE_ID_PREFIX = "sha256:"


@dataclass(frozen=True)
class CodePackageLimits:
    max_archive_bytes: int = 100 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_files: int = 10_000
    max_compression_ratio: int = 200
    """Per member: a bomb compresses a huge run of zeros into a few bytes."""


@dataclass(frozen=True)
class CodePackage:
    id: str
    sha256: str
    size_bytes: int
    file_count: int
    unpacked_bytes: int
    created_at: datetime


class CodePackageStore:
    """Packages under ``root/<sha256>/``: ``archive``, ``tree/`` (unpacked), ``owners/``."""

    def __init__(self, root: Path, limits: CodePackageLimits | None = None) -> None:
        self._root = root
        self._limits = limits or CodePackageLimits()

    @property
    def limits(self) -> CodePackageLimits:
        return self._limits

    def save(self, tenant_id: str, data: bytes) -> CodePackage:
        """Validate, unpack and store ``data``; idempotent for identical bytes."""
        if len(data) > self._limits.max_archive_bytes:
            raise PayloadTooLarge(
                f"code package is {len(data)} bytes; the limit is {self._limits.max_archive_bytes}"
            )
        if not data:
            raise InvalidArgument("code package is empty")
        digest = hashlib.sha256(data).hexdigest()
        home = self._root / digest
        if not (home / "tree").is_dir():
            self._root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self._root))
            try:
                tree = staging / "tree"
                tree.mkdir()
                files, unpacked = unpack_archive(data, tree, self._limits)
                (staging / "archive").write_bytes(data)
                (staging / "meta").write_text(f"{files} {unpacked}\n")
                (staging / "owners").mkdir()
                try:
                    staging.rename(home)
                except OSError:  # a concurrent upload of the same bytes won the race
                    shutil.rmtree(staging, ignore_errors=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        _safe_name(tenant_id)
        (home / "owners" / tenant_id).touch(exist_ok=True)
        return self._describe(digest)

    def exists(self, tenant_id: str, data: bytes) -> bool:
        """Whether ``tenant_id`` already uploaded exactly these bytes."""
        digest = hashlib.sha256(data).hexdigest()
        return (self._root / digest / "owners" / _safe_name(tenant_id)).exists()

    def get(self, tenant_id: str, package_id: str) -> CodePackage:
        digest = parse_package_id(package_id)
        if not (self._root / digest / "owners" / _safe_name(tenant_id)).exists():
            raise NotFound(f"code package {package_id} not found")
        return self._describe(digest)

    def tree(self, tenant_id: str, package_id: str) -> Path:
        """The read-only unpacked directory of a package the tenant owns."""
        package = self.get(tenant_id, package_id)
        return self._root / package.sha256 / "tree"

    def _describe(self, digest: str) -> CodePackage:
        home = self._root / digest
        files_text, _, unpacked_text = (home / "meta").read_text().strip().partition(" ")
        archive = home / "archive"
        created = datetime.fromtimestamp(archive.stat().st_mtime, UTC)
        return CodePackage(
            id=PACKAGE_ID_PREFIX + digest,
            sha256=digest,
            size_bytes=archive.stat().st_size,
            file_count=int(files_text),
            unpacked_bytes=int(unpacked_text),
            created_at=created,
        )


def parse_package_id(package_id: str) -> str:
    """``sha256:<64 hex>`` (or the bare hex) -> the hex digest; else ``InvalidArgument``."""
    value = package_id.removeprefix(PACKAGE_ID_PREFIX).lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(
            f"invalid code package id {package_id!r}: expected 'sha256:' and 64 hex digits"
        )
    return value


def _safe_name(tenant_id: str) -> str:
    if not tenant_id or "/" in tenant_id or tenant_id.startswith(".") or "\x00" in tenant_id:
        raise InvalidArgument(f"invalid tenant id {tenant_id!r}")
    return tenant_id


# -- unpacking -----------------------------------------------------------------------------


def unpack_archive(data: bytes, dest: Path, limits: CodePackageLimits) -> tuple[int, int]:
    """Unpack a zip or (gzipped) tar archive into the empty directory ``dest``.

    Returns ``(file_count, total_bytes)``. Raises ``InvalidArgument`` naming the bad member.
    """
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _unpack_zip(data, dest, limits)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArgument("code package must be a .zip or .tar.gz archive") from exc
    with archive:
        return _unpack_tar(archive, dest, limits)


def _checked_parts(name: str) -> tuple[str, ...]:
    if "\x00" in name or "\\" in name:
        raise InvalidArgument(f"archive member {name!r} has an invalid name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidArgument(f"archive member {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise InvalidArgument(f"archive member {name!r} escapes the package ('..')")
    return parts


class _Budget:
    def __init__(self, limits: CodePackageLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise InvalidArgument(
                f"code package has more than {self.limits.max_files} files"
            )

    def add_bytes(self, name: str, count: int) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_unpacked_bytes:
            raise InvalidArgument(
                f"code package unpacks to more than {self.limits.max_unpacked_bytes} bytes "
                f"(stopped at {name!r})"
            )


def _write_member(
    dest: Path, parts: tuple[str, ...], source: IO[bytes], name: str, budget: _Budget, mode: int
) -> None:
    parent = dest.joinpath(*parts[:-1])
    target = parent / parts[-1]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, flags, 0o755 if mode & 0o111 else 0o644)
    except OSError as exc:
        raise InvalidArgument(f"archive member {name!r} conflicts with another member") from exc
    read = source.read
    with os.fdopen(fd, "wb") as out:
        while chunk := read(1024 * 1024):
            budget.add_bytes(name, len(chunk))
            out.write(chunk)


def _unpack_zip(data: bytes, dest: Path, limits: CodePackageLimits) -> tuple[int, int]:
    budget = _Budget(limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidArgument("code package is not a valid zip archive") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            raise InvalidArgument(f"code package has more than {limits.max_files} files")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_unpacked_bytes:
            raise InvalidArgument(
                f"code package unpacks to {declared} bytes; the limit is "
                f"{limits.max_unpacked_bytes}"
            )
        for info in infos:
            parts = _checked_parts(info.filename)
            unix_mode = info.external_attr >> 16
            file_type = stat.S_IFMT(unix_mode)
            if file_type == stat.S_IFLNK:
                raise InvalidArgument(f"archive member {info.filename!r} is a symlink")
            if file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
                raise InvalidArgument(f"archive member {info.filename!r} is not a regular file")
            if not parts:
                continue
            if info.is_dir():
                budget.add_file(info.filename)
                try:
                    dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise InvalidArgument(f"archive member {info.filename!r} conflicts") from exc
                continue
            if info.compress_size and info.file_size / info.compress_size > (
                limits.max_compression_ratio
            ) and info.file_size > 1024 * 1024:
                raise InvalidArgument(
                    f"archive member {info.filename!r} has a suspicious compression ratio"
                )
            budget.add_file(info.filename)
            try:
                with archive.open(info) as source:
                    _write_member(dest, parts, source, info.filename, budget, unix_mode)
            except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
                raise InvalidArgument(f"archive member {info.filename!r} is corrupt") from exc
    return budget.files, budget.bytes


def _unpack_tar(archive: tarfile.TarFile, dest: Path, limits: CodePackageLimits) -> tuple[int, int]:
    budget = _Budget(limits)
    try:
        for member in archive:
            parts = _checked_parts(member.name)
            if member.issym() or member.islnk():
                raise InvalidArgument(f"archive member {member.name!r} is a link")
            if member.isdir():
                budget.add_file(member.name)
                if parts:
                    try:
                        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise InvalidArgument(f"archive member {member.name!r} conflicts") from exc
                continue
            if not member.isreg():
                raise InvalidArgument(
                    f"archive member {member.name!r} is not a regular file or directory"
                )
            if not parts:
                continue
            budget.add_file(member.name)
            if budget.bytes + member.size > limits.max_unpacked_bytes:
                raise InvalidArgument(
                    f"code package unpacks to more than {limits.max_unpacked_bytes} bytes "
                    f"(stopped at {member.name!r})"
                )
            source = archive.extractfile(member)
            if source is None:  # pragma: no cover - isreg() members always have data
                continue
            with source:
                _write_member(dest, parts, source, member.name, budget, member.mode)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise InvalidArgument("archive has conflicting members") from exc
        raise InvalidArgument(f"code package archive is corrupt: {exc.__class__.__name__}") from exc
    return budget.files, budget.bytes
