"""Where a new version's bytes come from: a succeeded job's output, a readable URI, or the
model file inside an uploaded archive.

All end as a ``StagedFile`` (a private, hashed local copy), so the version never depends
on the source afterwards: deleting or overwriting the job's ``output_path`` cannot break it.
A job's output directory and an unpacked archive are searched the same way: exactly one
model file, or the one the caller names with ``artifact_path``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fsspec  # type: ignore[import-untyped,unused-ignore]

from ml_platform.archives import ArchiveKind, ArchiveLimits, archive_kind, unpack_archive
from ml_platform.core.errors import FieldViolation, InvalidArgument, NotFound
from ml_platform.registry.artifacts import ArtifactStore, StagedFile
from ml_platform.registry.formats import MODEL_SUFFIXES, detect_format
from ml_platform.registry.staging import StagingArea
from ml_platform.schemas.models import ModelFormat


class CheckedPath(Protocol):
    @property
    def uri(self) -> str: ...

    @property
    def local(self) -> Path | None: ...


class PathChecker(Protocol):
    """The jobs' location policy (``jobs.paths.PathPolicy``), injected by the composition
    root: local roots and the remote prefixes each tenant may name. Every URI a caller names
    goes through it before any read."""

    def check_data_path(self, tenant_id: str, value: str, field: str = ...) -> CheckedPath: ...

    def check_output_path(self, tenant_id: str, value: str, field: str = ...) -> CheckedPath: ...


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, [FieldViolation(field, message)])


@dataclass(frozen=True)
class Sources:
    store: ArtifactStore
    staging: StagingArea
    paths: PathChecker
    max_bytes: int
    storage_options: Mapping[str, Any]
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)

    # -- a job's output ----------------------------------------------------------------------

    def stage_job_output(
        self, tenant_id: str, job_id: str, output_path: str, artifact_path: str | None
    ) -> StagedFile:
        resolved = self.paths.check_output_path(tenant_id, output_path)
        if resolved.local is None:
            return self._stage_remote_output(job_id, resolved.uri, artifact_path)
        if not resolved.local.exists():
            raise _invalid("job_id", f"training job {job_id!r} left no output at its output_path")
        if resolved.local.is_file():
            return self._stage_local_file(resolved.local, "job_id")
        origin = _Origin(f"training job {job_id!r}'s output", "job_id")
        return self._stage_from_tree(resolved.local, artifact_path, origin)[0]

    def _stage_from_tree(
        self, root: Path, artifact_path: str | None, origin: _Origin
    ) -> tuple[StagedFile, str]:
        """The one model file under the local directory ``root`` (or ``artifact_path``)."""
        files = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if stat.S_ISREG(os.lstat(p).st_mode)
        )
        chosen = _choose(files, artifact_path, origin)
        target = Path(os.path.realpath(root / chosen))
        if not target.is_relative_to(Path(os.path.realpath(root))):
            raise _invalid("artifact_path", f"{artifact_path!r} is outside {origin.name}")
        return self._stage_local_file(target, "artifact_path"), chosen

    def _stage_remote_output(self, job_id: str, uri: str, artifact_path: str | None) -> StagedFile:
        fs, root = fsspec.core.url_to_fs(uri, **dict(self.storage_options))
        if not fs.exists(root):
            raise _invalid("job_id", f"training job {job_id!r} left no output at {uri!r}")
        if fs.isfile(root):
            with fs.open(root, "rb") as reader:
                return self.staging.copy(reader, posixpath.basename(root), self.max_bytes)
        base = root.rstrip("/")
        files = sorted(p[len(base) + 1 :] for p in fs.find(base) if p.startswith(base + "/"))
        origin = _Origin(f"training job {job_id!r}'s output", "job_id")
        chosen = _choose(files, artifact_path, origin)
        with fs.open(f"{base}/{chosen}", "rb") as reader:
            return self.staging.copy(reader, posixpath.basename(chosen), self.max_bytes)

    def _stage_local_file(self, path: Path, field: str) -> StagedFile:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError as exc:  # the name only: never a server path
            raise NotFound(f"{field}: no file named {path.name!r} there") from exc
        except OSError as exc:
            raise _invalid(field, f"cannot read {path.name!r}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as reader:
            if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                raise _invalid(field, f"{path.name!r} is not a regular file")
            return self.staging.copy(reader, path.name, self.max_bytes)

    # -- an uploaded archive -----------------------------------------------------------------

    def is_archive(self, staged: StagedFile) -> bool:
        """Whether an upload is a zip or tar archive by its content (a skops model, itself a
        zip, is not: it is the artifact)."""
        kind = archive_kind(staged.path)
        if kind is ArchiveKind.ZIP:
            return detect_format(staged.path, staged.filename) is not ModelFormat.SKOPS
        return kind is not None

    def stage_archive_member(
        self, archive: StagedFile, artifact_path: str | None
    ) -> tuple[StagedFile, str]:
        """Unpack an uploaded archive safely and stage its model file on its own.

        Returns the staged file and its path inside the archive. The unpacked tree is removed
        whatever happens; unsafe or oversized archives raise ``InvalidArgument``.
        """
        tree = Path(tempfile.mkdtemp(prefix=".archive-", dir=self.staging.root))
        try:
            unpack_archive(archive.path, tree, self.archive_limits, label="model archive")
            origin = _Origin(f"the uploaded archive {archive.filename!r}", "file")
            return self._stage_from_tree(tree, artifact_path, origin)
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    # -- an existing URI ---------------------------------------------------------------------

    def stage_uri(self, tenant_id: str, uri: str) -> StagedFile:
        """Copy an artifact the tenant may read: its own registry artifacts, its own area,
        the shared read roots, or a remote URI under a prefix allowed for the tenant.
        Another tenant's registry artifact is "not found"; any other location is 422."""
        key = self.store.key_for_uri(uri)
        if key is not None:
            if not key.startswith(self.store.tenant_prefix(tenant_id)) or not self.store.exists(
                key
            ):
                raise NotFound(f"artifact {uri!r} not found")
            with self.store.open(key) as reader:
                return self.staging.copy(reader, posixpath.basename(key), self.max_bytes)
        # the location policy decides before anything is opened (the confused deputy: the
        # platform's credentials reach more than this tenant may)
        resolved = self.paths.check_data_path(tenant_id, uri, field="artifact_uri")
        if resolved.local is not None:
            if resolved.local.is_dir():
                raise _invalid(
                    "artifact_uri", "artifact_uri names a directory; name the model file"
                )
            return self._stage_local_file(resolved.local, "artifact_uri")
        fs, path = fsspec.core.url_to_fs(resolved.uri, **dict(self.storage_options))
        try:
            reader = fs.open(path, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {uri!r} not found") from exc
        with reader:
            return self.staging.copy(reader, posixpath.basename(path), self.max_bytes)


@dataclass(frozen=True)
class _Origin:
    """Where model files are looked for, for messages, and the field to blame for none."""

    name: str
    field: str


def _choose(files: list[str], artifact_path: str | None, origin: _Origin) -> str:
    if artifact_path is not None:
        wanted = posixpath.normpath(artifact_path.lstrip("/"))
        if wanted.startswith("..") or wanted not in files:
            raise _invalid(
                "artifact_path",
                f"{artifact_path!r} is not a file in {origin.name} (files: {_listing(files)})",
            )
        return wanted
    candidates = [f for f in files if posixpath.splitext(f)[1].lower() in MODEL_SUFFIXES]
    if len(candidates) > 1:
        non_json = [f for f in candidates if not f.lower().endswith(".json")]
        candidates = non_json if len(non_json) == 1 else candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _invalid(
            origin.field,
            f"{origin.name} holds no model file "
            f"(.joblib, .pkl, .skops, .onnx, .json, .ubj); files: {_listing(files)}",
        )
    raise _invalid(
        "artifact_path",
        f"{origin.name} holds several model files "
        f"({_listing(candidates)}); choose one with artifact_path",
    )


def _listing(files: list[str]) -> str:
    shown = ", ".join(files[:10]) or "none"
    return shown + (f" and {len(files) - 10} more" if len(files) > 10 else "")
