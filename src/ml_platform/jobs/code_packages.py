"""Content-addressed code packages: uploaded zip / tar.gz archives, unpacked safely.

A package is named by the SHA-256 of its archive bytes (``sha256:<hex>``), so uploading the
same archive twice stores it once (a shared blob). Each tenant that uploaded a package has its
own record, ``owners/<tenant_id>``, holding the time of *its* first upload: a package's
``created_at`` (and 201 vs 200) is always the asking tenant's, so uploading bytes another
tenant uploaded answers exactly as a first upload does (no cross-tenant oracle). Another
tenant asking for a package gets ``NotFound``, exactly as for one that does not exist.

Unpacking (``ml_platform.archives``, shared with the registry's archive uploads) refuses,
with ``InvalidArgument``: absolute member names, ``..`` components, symlinks or hard links,
device files, FIFOs, and archives whose total uncompressed size or file count exceed the
limits (zip bombs). The tree is unpacked into a fresh directory, then renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ml_platform.archives import ArchiveLimits, unpack_archive
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

    @property
    def archive(self) -> ArchiveLimits:
        return ArchiveLimits(self.max_unpacked_bytes, self.max_files, self.max_compression_ratio)


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
        # A tenant's first upload of these bytes does the whole work (unpack and check into a
        # staging directory) even when another tenant's blob exists, then drops its copy: the
        # answer and its cost do not tell whether someone else uploaded this code.
        first_for_tenant = not (home / "owners" / _safe_name(tenant_id)).exists()
        if first_for_tenant or not (home / "tree").is_dir():
            self._root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self._root))
            try:
                tree = staging / "tree"
                tree.mkdir()
                unpacked = unpack_archive(
                    data, tree, self._limits.archive, label="code package"
                )
                (staging / "archive").write_bytes(data)
                (staging / "meta").write_text(f"{unpacked.files} {unpacked.unpacked_bytes}\n")
                (staging / "owners").mkdir()
                try:
                    staging.rename(home)  # fails when the blob exists (or a racer won)
                except OSError:
                    shutil.rmtree(staging, ignore_errors=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        self._record_owner(home, tenant_id)
        return self._describe(digest, tenant_id)

    @staticmethod
    def _record_owner(home: Path, tenant_id: str) -> None:
        """This tenant's record of the package: created once (O_EXCL), never touched again."""
        owner = home / "owners" / _safe_name(tenant_id)
        try:
            fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(datetime.now(UTC).isoformat() + "\n")

    def exists(self, tenant_id: str, data: bytes) -> bool:
        """Whether ``tenant_id`` already uploaded exactly these bytes."""
        digest = hashlib.sha256(data).hexdigest()
        return (self._root / digest / "owners" / _safe_name(tenant_id)).exists()

    def get(self, tenant_id: str, package_id: str) -> CodePackage:
        digest = parse_package_id(package_id)
        if not (self._root / digest / "owners" / _safe_name(tenant_id)).exists():
            raise NotFound(f"code package {package_id} not found")
        return self._describe(digest, tenant_id)

    def tree(self, tenant_id: str, package_id: str) -> Path:
        """The read-only unpacked directory of a package the tenant owns."""
        package = self.get(tenant_id, package_id)
        return self._root / package.sha256 / "tree"

    def _describe(self, digest: str, tenant_id: str) -> CodePackage:
        home = self._root / digest
        files_text, _, unpacked_text = (home / "meta").read_text().strip().partition(" ")
        archive = home / "archive"
        created = _owner_created_at(home / "owners" / _safe_name(tenant_id))
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


def _owner_created_at(owner: Path) -> datetime:
    """When this tenant first uploaded the package (records from before the timestamp was
    written are empty: their own mtime, still this tenant's upload)."""
    with contextlib.suppress(ValueError, OSError):
        return datetime.fromisoformat(owner.read_text().strip())
    return datetime.fromtimestamp(owner.stat().st_mtime, UTC)


def _safe_name(tenant_id: str) -> str:
    if not tenant_id or "/" in tenant_id or tenant_id.startswith(".") or "\x00" in tenant_id:
        raise InvalidArgument(f"invalid tenant id {tenant_id!r}")
    return tenant_id
