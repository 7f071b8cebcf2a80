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

Storage quota: a package counts in each owner's ``max_storage_bytes`` at its archive size,
once per owning tenant (a ``stored_objects`` row, ``ml_platform.governance.storage_ledger``).
A tenant's first upload of the bytes is checked before it is unpacked (without a lock) and
again, locked, in the transaction that writes its owner record and its row; a re-upload by an
owner adds nothing and is never refused. The shared blob is written before that transaction:
a refusal there (only a race between two of the tenant's uploads) leaves a blob no tenant
owns, which nobody can name until someone uploads the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ml_platform.archives import ArchiveLimits, unpack_archive
from ml_platform.core.errors import InvalidArgument, NotFound, PayloadTooLarge
from ml_platform.governance.storage_ledger import StorageLedger, StoredObjectKind
from ml_platform.storage import ObjectExists, Storage

logger = logging.getLogger(__name__)

PACKAGE_ID_PREFIX = "sha256:"
PACKAGES_PREFIX = "code-packages/"
PACKAGE_WHAT = "this code package"  # what a refused package is called in the quota's problem


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
    """Packages in the platform's storage under ``code-packages/<sha256>/``: ``archive``,
    ``meta`` (file count and unpacked size) and ``owners/<tenant_id>`` (that tenant's first
    upload time). An owner record is written last, so it names a complete package: any
    replica that sees it can fetch the archive (checked against its SHA-256, the package id)
    and unpack it into its own scratch cache ``cache_dir/<sha256>/tree``."""

    def __init__(
        self, storage: Storage, cache_dir: Path, limits: CodePackageLimits | None = None
    ) -> None:
        self._storage = storage
        self._cache = cache_dir
        self._limits = limits or CodePackageLimits()

    @property
    def limits(self) -> CodePackageLimits:
        return self._limits

    def begin_upload(self, tenant_id: str, ledger: StorageLedger | None = None) -> PackageUpload:
        """Start receiving an archive: its bytes stream to a scratch file, hashed on the way,
        and are refused (``PayloadTooLarge``) as soon as they pass the archive limit.
        ``ledger``: charges the package to the tenant's storage quota (None: not charged)."""
        _safe_name(tenant_id)
        self._cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        return PackageUpload(self, tenant_id, ledger)

    def save(self, tenant_id: str, data: bytes) -> CodePackage:
        """Validate, unpack and store ``data``; idempotent for identical bytes."""
        upload = self.begin_upload(tenant_id)
        try:
            upload.write(data)
            return upload.save()[0]
        finally:
            upload.abort()

    def _save_file(
        self, tenant_id: str, archive: Path, digest: str, ledger: StorageLedger | None = None
    ) -> tuple[CodePackage, bool]:
        """Store the received archive ``archive`` (SHA-256 ``digest``) for the tenant; the
        package and whether this tenant had uploaded the same bytes before."""
        owner = _owner_key(digest, tenant_id)
        existed = self._storage.exists(owner)
        key, size = PACKAGE_ID_PREFIX + digest, archive.stat().st_size
        if ledger is not None and not existed:  # before the unpacking work
            ledger.precheck(tenant_id, StoredObjectKind.CODE_PACKAGE, key, size, PACKAGE_WHAT)
        # A tenant's first upload of these bytes does the whole work (unpack and check into a
        # staging directory) even when another tenant's blob exists, then drops its copy: the
        # answer and its cost do not tell whether someone else uploaded this code.
        if not existed or not self._storage.exists(_meta_key(digest)):
            files, unpacked_bytes = self._unpack(digest, archive)
            if not self._storage.exists(_meta_key(digest)):
                self._storage.put_file(_archive_key(digest), archive)
                self._storage.put_bytes(_meta_key(digest), f"{files} {unpacked_bytes}\n".encode())
        if ledger is None:
            self._record_owner(digest, tenant_id)
        else:  # an owner's re-upload only makes sure its charge is there (older packages)
            ledger.record(
                tenant_id,
                StoredObjectKind.CODE_PACKAGE,
                key,
                size,
                lambda: self._record_owner(digest, tenant_id),
                what=PACKAGE_WHAT,
                check=not existed,
            )
        return self._describe(digest, tenant_id), existed

    def _unpack(self, digest: str, archive: bytes | Path) -> tuple[int, int]:
        """Unpack (and so validate) ``archive`` into the local cache; (files, unpacked bytes)."""
        self._cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self._cache))
        try:
            tree = staging / "tree"
            tree.mkdir()
            unpacked = unpack_archive(archive, tree, self._limits.archive, label="code package")
            try:
                staging.rename(self._cache / digest)  # fails when cached (or a racer won)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return unpacked.files, unpacked.unpacked_bytes

    def _record_owner(self, digest: str, tenant_id: str) -> None:
        """This tenant's record of the package: created once, never touched again."""
        stamp = (datetime.now(UTC).isoformat() + "\n").encode()
        with contextlib.suppress(ObjectExists):
            self._storage.put_bytes(_owner_key(digest, tenant_id), stamp, exclusive=True)

    def exists(self, tenant_id: str, data: bytes) -> bool:
        """Whether ``tenant_id`` already uploaded exactly these bytes."""
        digest = hashlib.sha256(data).hexdigest()
        return self._storage.exists(_owner_key(digest, tenant_id))

    def get(self, tenant_id: str, package_id: str) -> CodePackage:
        digest = parse_package_id(package_id)
        if not self._storage.exists(_owner_key(digest, tenant_id)):
            raise NotFound(f"code package {package_id} not found")
        return self._describe(digest, tenant_id)

    def tree(self, tenant_id: str, package_id: str) -> Path:
        """The read-only unpacked directory of a package the tenant owns, in this replica's
        cache (fetched from storage and unpacked when missing)."""
        package = self.get(tenant_id, package_id)
        tree = self._cache / package.sha256 / "tree"
        if not tree.is_dir():
            archive = self._cache / f".{package.sha256[:12]}-{secrets.token_hex(6)}.archive"
            try:
                self._storage.download(_archive_key(package.sha256), archive, package.sha256)
                self._unpack(package.sha256, archive)
            except FileNotFoundError as exc:
                raise NotFound(f"code package {package_id} is missing from storage") from exc
            finally:
                archive.unlink(missing_ok=True)
        return tree

    def _describe(self, digest: str, tenant_id: str) -> CodePackage:
        try:
            meta = self._storage.get_bytes(_meta_key(digest)).decode()
            size = self._storage.size(_archive_key(digest))
        except FileNotFoundError as exc:
            raise NotFound(f"code package {PACKAGE_ID_PREFIX}{digest} not found") from exc
        files_text, _, unpacked_text = meta.strip().partition(" ")
        return CodePackage(
            id=PACKAGE_ID_PREFIX + digest,
            sha256=digest,
            size_bytes=size,
            file_count=int(files_text),
            unpacked_bytes=int(unpacked_text),
            created_at=self._owner_created_at(digest, tenant_id),
        )

    def _owner_created_at(self, digest: str, tenant_id: str) -> datetime:
        """When this tenant first uploaded the package (records from before the timestamp was
        written are empty: their own mtime, still this tenant's upload)."""
        key = _owner_key(digest, tenant_id)
        with contextlib.suppress(ValueError, OSError):
            return datetime.fromisoformat(self._storage.get_bytes(key).decode().strip())
        local = self._storage.local_path(key)
        if local is not None:
            return datetime.fromtimestamp(local.stat().st_mtime, UTC)
        return datetime.now(UTC)


def _archive_key(digest: str) -> str:
    return f"{PACKAGES_PREFIX}{digest}/archive"


def _meta_key(digest: str) -> str:
    return f"{PACKAGES_PREFIX}{digest}/meta"


def _owner_key(digest: str, tenant_id: str) -> str:
    return f"{PACKAGES_PREFIX}{digest}/owners/{_safe_name(tenant_id)}"


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


class PackageUpload:
    """One archive being received: chunks go to a scratch file in the cache directory and
    into a SHA-256, so neither the bytes nor a second pass over them is needed to name the
    package. ``save`` validates and publishes it; ``abort`` (always safe) drops the file."""

    def __init__(
        self, store: CodePackageStore, tenant_id: str, ledger: StorageLedger | None = None
    ) -> None:
        self._store = store
        self._tenant_id = tenant_id
        self._ledger = ledger
        self.limit = store.limits.max_archive_bytes
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".archive", dir=store._cache)
        self._path = Path(name)
        self._writer: IO[bytes] | None = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"code package is larger than the {self.limit}-byte limit "
            "(ML_PLATFORM_MAX_CODE_PACKAGE_BYTES)"
        )

    def write(self, chunk: bytes) -> None:
        if self._writer is None:
            raise ValueError("the upload is already finished")
        if self.size + len(chunk) > self.limit:
            self.abort()
            raise self.too_large()
        self._writer.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    def save(self) -> tuple[CodePackage, bool]:
        """Validate and store the received archive: the package, and whether this tenant had
        uploaded exactly these bytes before."""
        if self._writer is None:
            raise ValueError("the upload is already finished")
        self._writer.close()
        self._writer = None
        try:
            if not self.size:
                raise InvalidArgument("code package is empty")
            return self._store._save_file(
                self._tenant_id, self._path, self._digest.hexdigest(), self._ledger
            )
        finally:
            self._path.unlink(missing_ok=True)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._path.unlink(missing_ok=True)
