"""The platform's one blob store: every object under a single fsspec root URI.

``ML_PLATFORM_STORAGE_URI`` names it: a local directory (the default is the data dir itself,
so a single-machine install keeps its layout) or ``s3://bucket/prefix`` with the ``s3`` extra.
Code packages, model artifacts (``<root>/artifacts``) and job outputs live here, so any replica
reads what another one wrote, and a replica's own data dir is scratch space it can lose.

Keys are relative, ``/``-separated and built by the platform (never a caller's path).

Writes are published whole: the bytes stream into a temporary key under ``.tmp/`` and are
moved onto the real key in one step (a local ``rename``/``link``; on S3 a server-side copy,
which readers see complete or not at all), so no reader ever sees half an object. Reads that
know the object's SHA-256 check it and raise ``CorruptObject`` on a mismatch.

Domain-level: no web or RPC framework here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import fsspec  # type: ignore[import-untyped,unused-ignore]

CHUNK_BYTES = 1024 * 1024
TEMPORARY_PREFIX = ".tmp/"


class ObjectExists(Exception):
    """``put(..., exclusive=True)`` found the key already published."""


class CorruptObject(OSError):
    """The bytes read do not match the SHA-256 the caller expected."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size_bytes: int


class Storage:
    """Objects under one root URI (local directory or any fsspec protocol)."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None) -> None:
        if "://" not in root:
            root = Path(root).resolve().as_uri()
        self.root_uri = root.rstrip("/")
        self.options: dict[str, Any] = dict(options or {})
        self._fs, root_path = fsspec.core.url_to_fs(self.root_uri, **self.options)
        self._root = str(root_path).rstrip("/")
        protocol = self._fs.protocol
        self.protocol = protocol if isinstance(protocol, str) else protocol[0]
        self.is_local = self.protocol in ("file", "local")
        if self.is_local:
            Path(self._root).mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- keys --------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return f"{self.root_uri}/{check_key(key)}"

    def child_uri(self, prefix: str) -> str:
        """The URI of a sub-root (e.g. ``artifacts``), for stores layered on this one."""
        return f"{self.root_uri}/{check_key(prefix)}"

    def key_for_uri(self, uri: str) -> str | None:
        """The key a URI names inside this storage (or the key prefix of a directory), or
        None when the URI points elsewhere. URIs are compared exactly: callers pass URIs the
        location policy already normalized (no ``.``/``..``/empty segments)."""
        root = self.root_uri + "/"
        if self.is_local and "://" not in uri:
            uri = Path(uri).resolve().as_uri()
        if not uri.startswith(root):
            return None
        key = uri[len(root) :].rstrip("/")
        try:
            return check_key(key)
        except ValueError:
            return None

    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def local_path(self, key: str) -> Path | None:
        """The file itself when the storage is local, else None."""
        return Path(self._path(key)) if self.is_local else None

    # -- reading ------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return bool(self._fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        return int(self._fs.size(self._path(key)))

    def file_size(self, key: str) -> int | None:
        """The size of the object ``key``; None when there is none (a missing key, or only a
        prefix of other keys: object stores report those as empty "directories")."""
        try:
            info = self._fs.info(self._path(key))
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return int(info.get("size") or 0)

    @contextlib.contextmanager
    def open(self, key: str, *, block_size: int | None = None) -> Iterator[IO[bytes]]:
        """Read an object; ``FileNotFoundError`` when it is missing. ``block_size``: how much
        an object store fetches per request (its default, 50 MiB on S3, suits whole reads;
        seeking readers want less)."""
        options = {} if block_size is None else {"block_size": block_size}
        with self._fs.open(self._path(key), "rb", **options) as handle:
            yield handle

    def get_bytes(self, key: str, sha256: str | None = None) -> bytes:
        with self.open(key) as handle:
            data = handle.read()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptObject(f"object {key!r} does not match its recorded SHA-256")
        return bytes(data)

    def download(self, key: str, target: Path, sha256: str | None = None) -> StoredObject:
        """Copy an object to a local file atomically (absent or whole), hashing on the way."""
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with self.open(key) as reader, open(temporary, "xb") as writer:
                while chunk := reader.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    writer.write(chunk)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise CorruptObject(f"object {key!r} does not match its recorded SHA-256")
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)
        return StoredObject(key, digest.hexdigest(), size)

    def list(self, prefix: str) -> list[str]:
        """Keys directly or indirectly under ``prefix`` (a key ending without ``/``)."""
        base = self._path(prefix)
        try:
            found = self._fs.find(base)
        except FileNotFoundError:
            return []
        root = self._root + "/"
        keys = [str(p)[len(root) :] if str(p).startswith(root) else str(p) for p in found]
        return sorted(k for k in keys if not k.startswith(TEMPORARY_PREFIX))

    # -- writing ------------------------------------------------------------------------------

    def begin(self, key: str, *, exclusive: bool = False) -> PendingObject:
        """Start writing ``key``: bytes go to a temporary key until ``commit`` publishes them.
        ``exclusive``: refuse an existing key (``ObjectExists``); atomic locally (``link``),
        check-then-publish on object stores."""
        return PendingObject(self, check_key(key), exclusive=exclusive)

    def put(self, key: str, chunks: Iterable[bytes], *, exclusive: bool = False) -> StoredObject:
        """Stream ``chunks`` to ``key``, published whole (see ``begin``)."""
        pending = self.begin(key, exclusive=exclusive)
        try:
            for chunk in chunks:
                pending.write(chunk)
            return pending.commit()
        finally:
            pending.abort()

    def modified(self, key: str) -> datetime:
        """When the object was last written (UTC)."""
        value = self._fs.modified(self._path(key))
        if not isinstance(value, datetime):  # pragma: no cover - every fsspec backend we use
            raise TypeError(f"{self.protocol} reports no modification time")
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> StoredObject:
        return self.put(key, [data], exclusive=exclusive)

    def put_file(self, key: str, source: Path, *, exclusive: bool = False) -> StoredObject:
        def chunks() -> Iterator[bytes]:
            with open(source, "rb") as reader:
                while chunk := reader.read(CHUNK_BYTES):
                    yield chunk

        return self.put(key, chunks(), exclusive=exclusive)

    def _publish(self, temporary: str, path: str, *, exclusive: bool, key: str) -> None:
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if exclusive:
                try:
                    os.link(temporary, path)  # fails when the key exists: never overwrite
                except FileExistsError as exc:
                    raise ObjectExists(key) from exc
            else:
                Path(temporary).replace(path)
            return
        if exclusive and self._fs.exists(path):
            raise ObjectExists(key)
        self._fs.mv(temporary, path)

    def delete(self, key: str) -> None:
        """Remove an object; a missing one is fine."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(self._path(key))

    def download_tree(self, prefix: str, target: Path) -> int:
        """Copy an object (``prefix`` is a key) or every object under ``prefix`` into
        ``target`` (a file, or a directory keeping the relative names); returns the count."""
        keys = self.list(prefix)  # one listing: a file lists as itself
        if keys == [prefix]:
            self.download(prefix, target)
            return 1
        copied = 0
        for key in keys:
            if not key.startswith(prefix + "/"):
                continue
            relative = key[len(prefix) + 1 :]
            self.download(key, target.joinpath(*relative.split("/")))
            copied += 1
        return copied

    def upload_tree(self, source: Path, prefix: str) -> int:
        """Publish every regular file under ``source`` below ``prefix`` (symlinks, devices and
        FIFOs are skipped: a job's link must not point the platform at other files)."""
        copied = 0
        for dirpath, _dirnames, filenames in os.walk(source, followlinks=False):
            relative = Path(dirpath).relative_to(source)
            for name in filenames:
                path = Path(dirpath) / name
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                key = "/".join((prefix, *relative.parts, name))
                self.put_file(key, path)
                copied += 1
        return copied

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)


class PendingObject:
    """An object being written: ``write`` chunks, then ``commit`` (or ``abort``)."""

    def __init__(self, storage: Storage, key: str, *, exclusive: bool) -> None:
        self.key = key
        self._storage = storage
        self._exclusive = exclusive
        self._temporary = storage._path(f"{TEMPORARY_PREFIX}{secrets.token_hex(12)}")
        if storage.is_local:
            Path(self._temporary).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._writer: IO[bytes] | None = storage._fs.open(self._temporary, "wb")
        self._digest = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, chunk: bytes) -> None:
        if self._writer is None:
            raise ValueError(f"the write of {self.key!r} is already finished")
        self._digest.update(chunk)
        self.size += len(chunk)
        self._writer.write(chunk)

    def commit(self) -> StoredObject:
        writer = self._writer
        if writer is None:
            raise ValueError(f"the write of {self.key!r} is already finished")
        try:
            if self._storage.is_local:
                writer.flush()
                os.fsync(writer.fileno())
            writer.close()  # an object store completes the (multipart) upload here
            self._writer = None
            self._storage._publish(
                self._temporary,
                self._storage._path(self.key),
                exclusive=self._exclusive,
                key=self.key,
            )
            self._done = True
        finally:
            self.abort()
        return StoredObject(self.key, self._digest.hexdigest(), self.size)

    def abort(self) -> None:
        """Drop the temporary object (a no-op after a commit)."""
        if self._writer is not None:
            with contextlib.suppress(OSError, ValueError):
                self._writer.close()
            self._writer = None
        if not self._done:
            self._done = True
            with contextlib.suppress(OSError):
                if self._storage._fs.exists(self._temporary):
                    self._storage._fs.rm(self._temporary)


def check_key(key: str) -> str:
    """A key must be relative and normalized: no leading ``/``, ``..``, ``.`` or ``//``."""
    if (
        not key
        or "\x00" in key
        or "\\" in key
        or posixpath.normpath(key) != key
        or key.startswith(("/", "../"))
        or key == ".."
    ):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class StorageSettings(Protocol):
    """What ``storage_from_settings`` reads (``ml_platform.config.Settings`` has it)."""

    storage_options: dict[str, Any]

    @property
    def resolved_storage_uri(self) -> str: ...


def storage_from_settings(settings: StorageSettings) -> Storage:
    """The storage ``Settings`` describe (``storage_uri`` / ``storage_options``)."""
    return Storage(settings.resolved_storage_uri, settings.storage_options)
