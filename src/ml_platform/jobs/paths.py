"""The location policy: which paths and URIs a tenant may name.

One object decides, per tenant, what a job's ``data_path`` / ``output_path`` and a model
version's ``artifact_uri`` may point at, before anything is read or written:

- **Local paths** (plain or ``file://``) must resolve, after following every symlink, under
  one of the tenant's roots (with a remote storage, ``ML_PLATFORM_STORAGE_URI=s3://...``,
  relative paths name ``<storage>/tenants/<tenant_id>/<path>`` instead, so every replica
  and every Ray worker sees the same files): read and write, the tenant's own area
  ``<data_dir>/tenants/<tenant_id>/``; read only, each of ``settings.shared_read_roots``.
  Relative paths are taken relative to the tenant's area.
- **Every other scheme fsspec knows** (``s3``, ``gs``, ``http``, ``memory``, ...) is allowed
  only under a prefix the administrator granted that tenant
  (``settings.allowed_uri_prefixes``: tenant name or id -> prefixes), plus, when the artifact
  root is remote, the platform's own ``<artifact_root>/tenants/<tenant_id>/`` (read; written
  by jobs everywhere but its ``models/`` subtree, which holds the registry's immutable
  artifacts). The platform's storage credentials can read far more than one tenant may, so
  "the storage's own credentials" is not a boundary (the confused deputy).

URIs are split with fsspec's own ``split_protocol`` and compared segment by segment: the
scheme and the bucket (or host) must be equal exactly, and a URI with ``.``/``..`` or empty
segments (also percent-encoded), ``?``, ``#``, ``\\``, ``@`` in the bucket, or a chained
URL (``simplecache::s3://...``) is refused outright rather than normalized. Anything refused
is ``InvalidArgument`` naming the field (422); messages never show server paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import fsspec  # type: ignore[import-untyped,unused-ignore]

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.store.tenants import TenantRepository

if TYPE_CHECKING:
    from ml_platform.config import Settings
    from ml_platform.store.db import Database

LOCAL_SCHEMES = frozenset({"file"})
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_FORBIDDEN_CHARS = frozenset("\\?#\x00")
MAX_ECHO_CHARS = 200


@dataclass(frozen=True)
class ResolvedPath:
    """A checked path: ``local`` is set for local paths, else ``uri`` is a remote URI."""

    uri: str
    local: Path | None

    @property
    def is_local(self) -> bool:
        return self.local is not None


@dataclass(frozen=True)
class RemoteLocation:
    """A remote URI split into its lower-cased scheme and its exact path segments."""

    scheme: str
    segments: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{'/'.join(self.segments)}"

    def is_under(self, prefix: RemoteLocation) -> bool:
        return (
            self.scheme == prefix.scheme
            and self.segments[: len(prefix.segments)] == prefix.segments
        )


class LocationError(ValueError):
    """Why a URI is not a location the policy can compare (message safe to show)."""


def parse_remote(value: str) -> RemoteLocation | None:
    """Split a URI with fsspec's rules; None for a local path (plain or ``file://``).

    Raises ``LocationError`` for anything that cannot be compared safely: chained URLs,
    schemes fsspec does not know, dot or empty segments, query strings and fragments.
    """
    if "::" in value:
        raise LocationError("chained URLs ('a::b://...') are not allowed")
    protocol, rest = fsspec.core.split_protocol(value)
    if protocol is None:
        return None
    scheme = str(protocol).lower()
    if scheme in LOCAL_SCHEMES:
        return None
    if not _SCHEME.fullmatch(scheme) or scheme not in _known_protocols():
        raise LocationError(f"unsupported scheme {_echo(scheme)!r}")
    if not value[len(protocol) :].startswith("://"):
        raise LocationError(f"a {scheme} location must look like {scheme}://bucket/key")
    if any(char in _FORBIDDEN_CHARS or ord(char) < 0x20 for char in rest):
        raise LocationError("URIs may not contain '?', '#', '\\' or control characters")
    segments = rest.split("/")
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()  # one trailing slash names the same place
    for segment in segments:
        decoded = unquote(segment)
        if (
            segment in ("", ".", "..")
            or decoded in ("", ".", "..")
            or any(char in decoded for char in "/\\")
        ):
            raise LocationError("URIs may not contain empty, '.' or '..' segments")
    if "@" in segments[0]:
        raise LocationError("URIs may not carry credentials ('user@host')")
    return RemoteLocation(scheme, tuple(segments))


def _known_protocols() -> frozenset[str]:
    return frozenset(p.lower() for p in fsspec.available_protocols())


def _echo(value: str) -> str:
    """A caller's value, bounded for messages."""
    if len(value) <= MAX_ECHO_CHARS:
        return value
    return value[:MAX_ECHO_CHARS] + f"... ({len(value)} characters)"


class PathPolicy:
    def __init__(
        self,
        data_dir: Path,
        shared_read_roots: Sequence[Path] | None = None,
        *,
        allowed_uri_prefixes: Mapping[str, Sequence[str]] | None = None,
        artifact_root: str | None = None,
        tenant_name: Callable[[str], str | None] | None = None,
        storage_uri: str | None = None,
    ) -> None:
        """``allowed_uri_prefixes`` maps a tenant's name or id to remote prefixes;
        ``tenant_name`` resolves an id to its name (needed only for name keys);
        ``artifact_root`` is the registry's root URI (its tenant subtree is allowed);
        ``storage_uri``, when remote, moves the tenant's area to ``<storage>/tenants/<id>/``
        (relative paths resolve there, so every replica sees the same files)."""
        self._data_dir = data_dir
        self._shared = [Path(os.path.realpath(root)) for root in shared_read_roots or []]
        self._prefixes: dict[str, tuple[RemoteLocation, ...]] = {}
        for tenant, prefixes in (allowed_uri_prefixes or {}).items():
            self._prefixes[tenant] = tuple(parse_prefix(p, tenant) for p in prefixes)
        self._artifact_root: RemoteLocation | None = None
        if artifact_root and "://" in artifact_root:
            self._artifact_root = parse_prefix(artifact_root, "artifact_root")
        self._tenant_name = tenant_name
        self._tenant_areas: RemoteLocation | None = None
        if storage_uri and "://" in storage_uri:
            base = parse_prefix(storage_uri, "storage_uri")
            self._tenant_areas = RemoteLocation(base.scheme, (*base.segments, "tenants"))

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None = None) -> PathPolicy:
        """The policy ``settings`` describe; ``db`` resolves tenant names in the prefixes."""
        return cls(
            Path(settings.data_dir).resolve(),
            list(settings.shared_read_roots),
            allowed_uri_prefixes=settings.allowed_uri_prefixes,
            artifact_root=settings.resolved_artifact_root,
            tenant_name=_TenantNames(db) if db is not None else None,
            storage_uri=settings.storage_uri,
        )

    def tenant_root(self, tenant_id: str) -> Path:
        if not tenant_id or "/" in tenant_id or tenant_id.startswith(".") or "\x00" in tenant_id:
            raise InvalidArgument(f"invalid tenant id {_echo(tenant_id)!r}")
        return Path(os.path.realpath(self._data_dir)) / "tenants" / tenant_id

    def tenant_area_uri(self, tenant_id: str) -> str | None:
        """The tenant's area in a remote storage (``<storage>/tenants/<id>``), else None."""
        if self._tenant_areas is None:
            return None
        self.tenant_root(tenant_id)  # the same tenant id check
        return RemoteLocation(
            self._tenant_areas.scheme, (*self._tenant_areas.segments, tenant_id)
        ).uri

    def ensure_tenant_root(self, tenant_id: str) -> Path:
        root = self.tenant_root(tenant_id)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    # -- the three fields --------------------------------------------------------------------

    def check_data_path(self, tenant_id: str, value: str, field: str = "data_path") -> ResolvedPath:
        """A location the tenant may read (``data_path``; ``artifact_uri`` uses it too)."""
        roots = [self.tenant_root(tenant_id), *self._shared]
        return self._check(tenant_id, value, field, roots, write=False)

    def check_artifact_uri(
        self, tenant_id: str, value: str, field: str = "artifact_uri"
    ) -> ResolvedPath:
        return self.check_data_path(tenant_id, value, field)

    def check_output_path(
        self, tenant_id: str, value: str, field: str = "output_path"
    ) -> ResolvedPath:
        return self._check(tenant_id, value, field, [self.tenant_root(tenant_id)], write=True)

    def remote_prefixes(self, tenant_id: str, *, write: bool = False) -> list[str]:
        """The remote prefixes ``tenant_id`` may name (for messages and the README)."""
        return [p.uri for p in self._remote_allowed(tenant_id, write=write)[0]]

    # -- internals ---------------------------------------------------------------------------

    def _remote_allowed(
        self, tenant_id: str, *, write: bool
    ) -> tuple[list[RemoteLocation], list[RemoteLocation]]:
        """(allowed prefixes, denied sub-prefixes) for this tenant."""
        allowed = list(self._prefixes.get(tenant_id, ()))
        if self._tenant_name is not None and self._prefixes:
            name = self._tenant_name(tenant_id)
            if name is not None and name != tenant_id:
                allowed.extend(self._prefixes.get(name, ()))
        denied: list[RemoteLocation] = []
        if self._tenant_areas is not None:
            segments = (*self._tenant_areas.segments, tenant_id)
            allowed.append(RemoteLocation(self._tenant_areas.scheme, segments))
        if self._artifact_root is not None:
            own = RemoteLocation(
                self._artifact_root.scheme,
                (*self._artifact_root.segments, "tenants", tenant_id),
            )
            allowed.append(own)
            if write:
                denied.append(RemoteLocation(own.scheme, (*own.segments, "models")))
        return allowed, denied

    def _check(
        self, tenant_id: str, value: str, field: str, roots: list[Path], *, write: bool
    ) -> ResolvedPath:
        def reject(why: str) -> InvalidArgument:
            return InvalidArgument(f"{field}: {why}", [FieldViolation(field, why)])

        if not value or "\x00" in value:
            raise reject("must be a non-empty path or URI")
        try:
            remote = parse_remote(value)
        except LocationError as exc:
            raise reject(f"{_echo(value)!r}: {exc}") from None
        if remote is not None:
            allowed, denied = self._remote_allowed(tenant_id, write=write)
            if any(remote.is_under(p) for p in allowed) and not any(
                remote.is_under(d) for d in denied
            ):
                return ResolvedPath(uri=remote.uri, local=None)
            raise reject(
                f"{_echo(value)!r} is not a location this tenant may use "
                f"({'write to' if write else 'read'}); ask the platform administrator to "
                "allow its prefix for your tenant (ML_PLATFORM_ALLOWED_URI_PREFIXES)"
            )
        area = self.tenant_area_uri(tenant_id)
        if area is not None and "://" not in value and not value.startswith("/"):
            # the tenant's area is in the shared storage: relative paths name objects there
            try:
                remote = parse_remote(f"{area}/{value}")
            except LocationError as exc:
                raise reject(f"{_echo(value)!r}: {exc}") from None
            assert remote is not None
            return ResolvedPath(uri=remote.uri, local=None)
        parsed = urlparse(value)
        if parsed.scheme.lower() == "file":
            if parsed.netloc not in ("", "localhost"):
                raise reject("file:// URIs must name a local path (file:///...)")
            raw = unquote(parsed.path)
        else:
            raw = value
        path = Path(raw)
        if not path.is_absolute():
            path = self.tenant_root(tenant_id) / path
        resolved = Path(os.path.realpath(path))
        for root in roots:
            if resolved == root or resolved.is_relative_to(root):
                return ResolvedPath(uri=str(resolved), local=resolved)
        where = (
            "use a path relative to your tenant's area (e.g. 'data/train.csv')"
            + (" or one under a shared read root" if self._shared else "")
            if not write
            else "use a path relative to your tenant's area (e.g. 'models/run-1')"
        )
        raise reject(f"{_echo(value)!r} is outside the paths this tenant may use: {where}")


class _TenantNames:
    """Tenant id -> name from the store, remembered (a tenant's name never changes)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._names: dict[str, str] = {}

    def __call__(self, tenant_id: str) -> str | None:
        name = self._names.get(tenant_id)
        if name is None:
            with self._db.read() as session:
                tenant = TenantRepository(session).get(tenant_id)
            if tenant is None:
                return None
            name = self._names[tenant_id] = tenant.name
        return name


def parse_prefix(value: str, owner: str) -> RemoteLocation:
    """An administrator's prefix, parsed by the same rules as a tenant's URI."""
    try:
        parsed = parse_remote(value)
    except LocationError as exc:
        raise ValueError(f"allowed URI prefix {value!r} for {owner!r}: {exc}") from None
    if parsed is None:
        raise ValueError(
            f"allowed URI prefix {value!r} for {owner!r} is a local path; local access is "
            "the tenant's area and shared_read_roots"
        )
    return parsed
