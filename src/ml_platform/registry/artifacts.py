"""The artifact store: one small interface over fsspec, local directory or ``s3://``.

Keys look like ``tenants/<tenant_id>/models/<model_id>/<artifact_id>/<filename>``. Every
key is built here from ids the platform generated, never from a caller's path, and every
caller-supplied URI that points into the store is checked against the caller's tenant
prefix after normalization (``..``, ``//``, percent-encoding), so no URI trick reaches
another tenant's artifacts.

Artifacts are immutable: ``put`` refuses an existing key, local files are written under a
temporary name, made read-only, then linked into place (never overwritten).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import fsspec  # type: ignore[import-untyped,unused-ignore]

from ml_platform.core.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
_FILENAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str | None, default: str = "model") -> str:
    """A single path component made of safe characters (the original name is kept apart)."""
    base = posixpath.basename((name or "").replace("\\", "/"))
    cleaned = _FILENAME_SAFE.sub("_", base).strip("._")[:200]
    return cleaned or default


@dataclass(frozen=True)
class StagedFile:
    """A local file with its digest, ready to be put into the store."""

    path: Path
    filename: str
    sha256: str
    size_bytes: int


class ArtifactStore:
    """Artifacts under one root URI. Keys are relative, ``/``-separated and tenant-first."""

    def __init__(self, root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        if "://" not in root:
            root = Path(root).resolve().as_uri()
        self.root_uri = root.rstrip("/")
        self._fs, root_path = fsspec.core.url_to_fs(self.root_uri, **dict(storage_options or {}))
        self._root = root_path.rstrip("/")
        protocol = self._fs.protocol
        self.protocol = protocol if isinstance(protocol, str) else protocol[0]
        self.is_local = self.protocol in ("file", "local")
        if self.is_local:
            Path(self._root).mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- keys and URIs -----------------------------------------------------------------------

    @staticmethod
    def tenant_prefix(tenant_id: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", tenant_id):
            raise ValueError(f"invalid tenant id {tenant_id!r}")
        return f"tenants/{tenant_id}/"

    def new_key(self, tenant_id: str, model_id: str, artifact_id: str, filename: str) -> str:
        prefix = self.tenant_prefix(tenant_id)
        return f"{prefix}models/{model_id}/{artifact_id}/{safe_filename(filename)}"

    def uri(self, key: str) -> str:
        return f"{self.root_uri}/{key}"

    def _path(self, key: str) -> str:
        normalized = posixpath.normpath(key)
        if normalized.startswith(("/", "..")) or normalized != key:
            raise ValueError(f"invalid artifact key {key!r}")
        return f"{self._root}/{key}"

    def key_for_uri(self, uri: str) -> str | None:
        """The store key a URI names, or None when the URI points outside this store.

        The URI is normalized first (percent-decoding, ``..``, duplicate slashes), and local
        paths are resolved through symlinks, so ``root/tenants/a/../b/x`` is seen as ``b``'s.
        """
        parsed = urlparse(uri)
        scheme = parsed.scheme.lower()
        if self.is_local:
            if scheme == "file":
                raw = unquote(parsed.path)
            elif scheme and len(scheme) > 1:
                return None
            else:
                raw = uri
            resolved = Path(os.path.realpath(raw))
            root = Path(os.path.realpath(self._root))
            if resolved == root or not resolved.is_relative_to(root):
                return None
            return resolved.relative_to(root).as_posix()
        if scheme not in (self.protocol, *(_aliases(self.protocol))):
            return None
        full = posixpath.normpath(unquote(f"{parsed.netloc}/{parsed.path.lstrip('/')}"))
        root = posixpath.normpath(self._root)
        if full == root or not full.startswith(root + "/"):
            return None
        return full[len(root) + 1 :]

    # -- reading and writing -----------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return bool(self._fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        try:
            return int(self._fs.size(self._path(key)))
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {key!r} is missing from the store") from exc

    def put(self, staged: StagedFile, key: str) -> str:
        """Copy a staged file to ``key`` (write-once); returns the artifact URI."""
        path = self._path(key)
        if self.is_local:
            self._put_local(staged.path, Path(path))
        else:
            if self._fs.exists(path):
                raise Conflict(f"artifact {key!r} already exists; artifacts are immutable")
            self._fs.put_file(str(staged.path), path)
        return self.uri(key)

    def _put_local(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
        try:
            with open(source, "rb") as reader, open(temporary, "xb") as writer:
                while chunk := reader.read(CHUNK_BYTES):
                    writer.write(chunk)
                writer.flush()
                os.fsync(writer.fileno())
            temporary.chmod(0o444)
            try:
                os.link(temporary, target)  # fails if the target exists: never overwrite
            except FileExistsError as exc:
                raise Conflict(
                    f"artifact {target.name!r} already exists; artifacts are immutable"
                ) from exc
        finally:
            temporary.unlink(missing_ok=True)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        try:
            handle = self._fs.open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {key!r} is missing from the store") from exc
        with handle:
            yield handle

    def iter_bytes(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        with self.open(key) as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk

    def download(self, key: str, target: Path, sha256: str | None = None) -> None:
        """Copy an artifact to a local file, atomically: ``target`` is either absent or whole.

        The bytes go to a temporary file beside ``target`` (hashed on the way), are checked
        against ``sha256`` when given, then renamed into place. An interrupted or corrupt
        download leaves nothing behind; a hash mismatch raises ``CorruptArtifact``.
        """
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
        try:
            digest = hashlib.sha256()
            with self.open(key) as reader, open(temporary, "xb") as writer:
                while chunk := reader.read(CHUNK_BYTES):
                    digest.update(chunk)
                    writer.write(chunk)
                writer.flush()
                os.fsync(writer.fileno())
            if sha256 is not None and digest.hexdigest() != sha256:
                raise CorruptArtifact(
                    f"artifact {key!r} in the store does not match its recorded SHA-256"
                )
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)

    def cached_copy(self, key: str, cache_dir: Path, sha256: str) -> Path:
        """A verified local copy of an artifact under ``cache_dir/<sha256>/``.

        A cached file is used only when its SHA-256 is the recorded one; a truncated or
        corrupt one (a crash mid-write before this cache was atomic, a damaged disk) is
        removed and fetched again.
        """
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"invalid sha256 {sha256!r}")
        target = cache_dir / sha256 / posixpath.basename(self._path(key))
        if target.exists():
            if hash_file(target)[0] == sha256:
                return target
            logger.warning("cached artifact %s is corrupt; fetching it again", target.name)
            target.unlink(missing_ok=True)
        self.download(key, target, sha256=sha256)
        return target

    def local_path(self, key: str) -> Path | None:
        """The file itself when the store is local (load it in place), else None."""
        path = self._path(key)
        return Path(path) if self.is_local else None

    def delete(self, key: str) -> None:
        """Remove an artifact and its now-empty per-artifact directory. Missing is fine."""
        path = self._path(key)
        try:
            self._fs.rm(path)
        except FileNotFoundError:
            return
        if self.is_local:
            with contextlib.suppress(OSError):
                Path(path).parent.rmdir()


class CorruptArtifact(OSError):
    """The bytes read from the store do not match the artifact's recorded SHA-256."""


def _aliases(protocol: str) -> tuple[str, ...]:
    return ("s3a", "s3") if protocol in ("s3", "s3a") else (protocol,)


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
