"""The path policy: which local paths a tenant's job may read and write.

With the local executor, job code runs on the platform's own machine, so a job's declared
``data_path`` and ``output_path`` are a security boundary. A local path (plain or ``file://``)
must resolve, after following every symlink, under one of the tenant's allowed roots:

- read and write: the tenant's own area ``<data_dir>/tenants/<tenant_id>/``;
- read only (``data_path``): each of ``settings.shared_read_roots``.

Relative paths are taken relative to the tenant's area. Remote URIs (``s3://``) are allowed:
access to them is governed by the storage's own credentials. Anything else is
``InvalidArgument`` naming the field (422 at submit time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ml_platform.core.errors import FieldViolation, InvalidArgument

REMOTE_SCHEMES = frozenset({"s3"})


@dataclass(frozen=True)
class ResolvedPath:
    """A checked path: ``local`` is set for local paths, else ``uri`` is a remote URI."""

    uri: str
    local: Path | None

    @property
    def is_local(self) -> bool:
        return self.local is not None


class PathPolicy:
    def __init__(self, data_dir: Path, shared_read_roots: list[Path] | None = None) -> None:
        self._data_dir = data_dir
        self._shared = [Path(os.path.realpath(root)) for root in shared_read_roots or []]

    def tenant_root(self, tenant_id: str) -> Path:
        if not tenant_id or "/" in tenant_id or tenant_id.startswith(".") or "\x00" in tenant_id:
            raise InvalidArgument(f"invalid tenant id {tenant_id!r}")
        return Path(os.path.realpath(self._data_dir)) / "tenants" / tenant_id

    def ensure_tenant_root(self, tenant_id: str) -> Path:
        root = self.tenant_root(tenant_id)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    def check_data_path(self, tenant_id: str, value: str, field: str = "data_path") -> ResolvedPath:
        roots = [self.tenant_root(tenant_id), *self._shared]
        return self._check(tenant_id, value, field, roots)

    def check_output_path(
        self, tenant_id: str, value: str, field: str = "output_path"
    ) -> ResolvedPath:
        return self._check(tenant_id, value, field, [self.tenant_root(tenant_id)])

    def _check(self, tenant_id: str, value: str, field: str, roots: list[Path]) -> ResolvedPath:
        def reject(why: str) -> InvalidArgument:
            message = f"{field}: {why}"
            return InvalidArgument(message, [FieldViolation(field, why)])

        if not value or "\x00" in value:
            raise reject("must be a non-empty path or URI")
        parsed = urlparse(value)
        scheme = parsed.scheme.lower()
        if scheme in REMOTE_SCHEMES:
            if not parsed.netloc:
                raise reject(f"{value!r} names no bucket")
            return ResolvedPath(uri=value, local=None)
        if scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise reject("file:// URIs must name a local path (file:///...)")
            raw = unquote(parsed.path)
        elif scheme and len(scheme) > 1:
            allowed = ", ".join(sorted({"file", *REMOTE_SCHEMES}))
            raise reject(f"unsupported scheme {scheme!r} (allowed: {allowed} or a local path)")
        else:
            raw = value
        path = Path(raw)
        if not path.is_absolute():
            path = self.tenant_root(tenant_id) / path
        resolved = Path(os.path.realpath(path))
        for root in roots:
            if resolved == root or resolved.is_relative_to(root):
                return ResolvedPath(uri=str(resolved), local=resolved)
        allowed_roots = ", ".join(str(root) for root in roots)
        raise reject(
            f"{value!r} is outside the paths this tenant may use ({allowed_roots})"
        )
