"""Model registry rows (models, versions, aliases, tags) and the tenant-scoped repository."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.errors import AlreadyExists, Conflict
from ml_platform.store.base import Base, JSONType, UTCDateTime, is_foreign_key_violation, utcnow
from ml_platform.store.records import Page


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_models_tenant_name"),
        Index("ix_models_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    framework: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    version_counter: Mapped[int] = mapped_column(Integer, default=0)
    """The last version number handed out; only ever incremented (numbers are never reused)."""
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelTagRow(Base):
    """One row per tag so tag filters use an index instead of scanning JSON."""

    __tablename__ = "model_tags"
    __table_args__ = (Index("ix_model_tags_lookup", "tenant_id", "key", "value", "model_id"),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str] = mapped_column(String(40))


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        Index("ix_model_versions_tenant_job", "tenant_id", "job_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    artifact_uri: Mapped[str] = mapped_column(String(2048))
    artifact_key: Mapped[str] = mapped_column(String(1024))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    framework: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    signature_source: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    source_kind: Mapped[str] = mapped_column(String(16))
    source_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_model_aliases_version_model_versions",
        ),
    )

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str] = mapped_column(String(32))
    """A fresh random token on every write: the compare-and-set key for ``If-Match``."""
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRecord:
    id: str
    tenant_id: str
    name: str
    framework: str
    description: str
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ModelVersionRecord:
    id: str
    model_id: str
    tenant_id: str
    version: int
    artifact_uri: str
    artifact_key: str
    filename: str
    sha256: str
    size_bytes: int
    framework: str
    format: str
    signature: dict[str, Any] | None
    signature_source: str
    metadata: dict[str, Any]
    description: str
    source_kind: str
    source_uri: str | None
    job_id: str | None
    lineage: dict[str, Any] | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class AliasRecord:
    model_id: str
    name: str
    version: int
    etag: str
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class NewVersion:
    """Everything a version row needs except its number, which the repository assigns."""

    id: str
    artifact_uri: str
    artifact_key: str
    filename: str
    sha256: str
    size_bytes: int
    framework: str
    format: str
    signature: dict[str, Any] | None
    signature_source: str
    source_kind: str
    created_by: str
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source_uri: str | None = None
    job_id: str | None = None
    lineage: dict[str, Any] | None = None


def _model(row: ModelRow) -> ModelRecord:
    return ModelRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        framework=row.framework,
        description=row.description or "",
        tags=dict(row.tags or {}),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version(row: ModelVersionRow) -> ModelVersionRecord:
    return ModelVersionRecord(
        id=row.id,
        model_id=row.model_id,
        tenant_id=row.tenant_id,
        version=row.version,
        artifact_uri=row.artifact_uri,
        artifact_key=row.artifact_key,
        filename=row.filename,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        framework=row.framework,
        format=row.format,
        signature=row.signature,
        signature_source=row.signature_source,
        metadata=dict(row.metadata_ or {}),
        description=row.description or "",
        source_kind=row.source_kind,
        source_uri=row.source_uri,
        job_id=row.job_id,
        lineage=row.lineage,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _alias(row: ModelAliasRow) -> AliasRecord:
    return AliasRecord(
        model_id=row.model_id,
        name=row.name,
        version=row.version,
        etag=row.etag,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def new_etag() -> str:
    return secrets.token_hex(12)


class ModelRepository:
    """Every query is scoped to one tenant; another tenant's model does not exist."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self._session = session
        self.tenant_id = tenant_id

    # -- models ------------------------------------------------------------------------------

    def add(
        self,
        *,
        model_id: str,
        name: str,
        framework: str,
        description: str,
        tags: Mapping[str, str],
        created_by: str,
    ) -> ModelRecord:
        now = utcnow()
        row = ModelRow(
            id=model_id,
            tenant_id=self.tenant_id,
            name=name,
            framework=framework,
            description=description,
            tags=dict(tags),
            version_counter=0,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(f"model {name!r} already exists") from exc
        self._set_tags(model_id, tags)
        return _model(row)

    def _set_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        self._session.execute(delete(ModelTagRow).where(ModelTagRow.model_id == model_id))
        self._session.add_all(
            ModelTagRow(model_id=model_id, key=k, value=v, tenant_id=self.tenant_id)
            for k, v in tags.items()
        )
        self._session.flush()

    def get(self, name: str) -> ModelRecord | None:
        row = self._session.scalar(
            select(ModelRow).where(ModelRow.tenant_id == self.tenant_id, ModelRow.name == name)
        )
        return _model(row) if row else None

    def search(
        self,
        *,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[ModelRecord]:
        where = self._filters(framework, tags)
        total = self._session.scalar(select(func.count()).select_from(ModelRow).where(where)) or 0
        rows = self._session.scalars(
            select(ModelRow)
            .where(where)
            .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return Page(items=[_model(r) for r in rows], total=total)

    def search_after(
        self,
        *,
        framework: str | None = None,
        tags: Mapping[str, str] | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[ModelRecord]:
        """Keyset page: up to ``limit`` models strictly after ``after`` = (created_at, id) in
        ``created_at desc, id desc`` order; models created meanwhile never shift later pages."""
        where = self._filters(framework, tags)
        if after is not None:
            created_at, model_id = after
            where = and_(
                where,
                or_(
                    ModelRow.created_at < created_at,
                    and_(ModelRow.created_at == created_at, ModelRow.id < model_id),
                ),
            )
        rows = self._session.scalars(
            select(ModelRow)
            .where(where)
            .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
            .limit(limit)
        )
        return [_model(r) for r in rows]

    def _filters(
        self, framework: str | None, tags: Mapping[str, str] | None
    ) -> ColumnElement[bool]:
        conditions = [ModelRow.tenant_id == self.tenant_id]
        if framework is not None:
            conditions.append(ModelRow.framework == framework)
        for key, value in (tags or {}).items():
            conditions.append(
                ModelRow.id.in_(
                    select(ModelTagRow.model_id).where(
                        ModelTagRow.tenant_id == self.tenant_id,
                        ModelTagRow.key == key,
                        ModelTagRow.value == value,
                    )
                )
            )
        return and_(*conditions)

    def update(
        self,
        model_id: str,
        *,
        framework: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelRecord | None:
        row = self._session.scalar(
            select(ModelRow).where(ModelRow.id == model_id, ModelRow.tenant_id == self.tenant_id)
        )
        if row is None:
            return None
        if framework is not None:
            row.framework = framework
        if description is not None:
            row.description = description
        if tags is not None:
            row.tags = dict(tags)
            self._set_tags(model_id, tags)
        row.updated_at = utcnow()
        self._session.flush()
        return _model(row)

    def delete(self, model_id: str) -> list[str]:
        """Delete the model, its versions and aliases; returns the artifact keys to remove."""
        keys = list(
            self._session.scalars(
                select(ModelVersionRow.artifact_key).where(
                    ModelVersionRow.model_id == model_id,
                    ModelVersionRow.tenant_id == self.tenant_id,
                )
            )
        )
        # explicit deletes rather than relying on ON DELETE CASCADE (alias -> version FK order)
        self._session.execute(delete(ModelAliasRow).where(ModelAliasRow.model_id == model_id))
        self._session.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model_id))
        self._session.execute(delete(ModelTagRow).where(ModelTagRow.model_id == model_id))
        try:
            self._session.execute(
                delete(ModelRow).where(
                    ModelRow.id == model_id, ModelRow.tenant_id == self.tenant_id
                )
            )
        except IntegrityError as exc:
            if not is_foreign_key_violation(exc):
                raise
            # a deployment of it committed after the caller's check (the key of migration 0006)
            raise Conflict("the model is deployed; delete those deployments first") from None
        return keys

    # -- versions ----------------------------------------------------------------------------

    def allocate_version(self, model_id: str) -> int | None:
        """Hand out the next version number, or None when the model is gone.

        A single ``UPDATE ... RETURNING``: PostgreSQL row-locks the model until commit and
        SQLite takes its write lock, so concurrent creates serialize; a rolled-back creation
        rolls its number back too, so numbers have no gaps.
        """
        result = self._session.execute(
            update(ModelRow)
            .where(ModelRow.id == model_id, ModelRow.tenant_id == self.tenant_id)
            .values(version_counter=ModelRow.version_counter + 1, updated_at=utcnow())
            .returning(ModelRow.version_counter)
        )
        value = result.scalar_one_or_none()
        return int(value) if value is not None else None

    def add_version(self, model_id: str, version: int, new: NewVersion) -> ModelVersionRecord:
        row = ModelVersionRow(
            id=new.id,
            model_id=model_id,
            tenant_id=self.tenant_id,
            version=version,
            artifact_uri=new.artifact_uri,
            artifact_key=new.artifact_key,
            filename=new.filename,
            sha256=new.sha256,
            size_bytes=new.size_bytes,
            framework=new.framework,
            format=new.format,
            signature=new.signature,
            signature_source=new.signature_source,
            metadata_=dict(new.metadata),
            description=new.description,
            source_kind=new.source_kind,
            source_uri=new.source_uri,
            job_id=new.job_id,
            lineage=new.lineage,
            created_by=new.created_by,
            created_at=utcnow(),
        )
        self._session.add(row)
        self._session.flush()
        return _version(row)

    def get_version(self, model_id: str, version: int) -> ModelVersionRecord | None:
        row = self._session.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model_id,
                ModelVersionRow.tenant_id == self.tenant_id,
                ModelVersionRow.version == version,
            )
        )
        return _version(row) if row else None

    def latest_version(self, model_id: str) -> int | None:
        value = self._session.scalar(
            select(func.max(ModelVersionRow.version)).where(
                ModelVersionRow.model_id == model_id,
                ModelVersionRow.tenant_id == self.tenant_id,
            )
        )
        return int(value) if value is not None else None

    def latest_versions(self, model_ids: list[str]) -> dict[str, int]:
        if not model_ids:
            return {}
        rows = self._session.execute(
            select(ModelVersionRow.model_id, func.max(ModelVersionRow.version))
            .where(
                ModelVersionRow.tenant_id == self.tenant_id,
                ModelVersionRow.model_id.in_(model_ids),
            )
            .group_by(ModelVersionRow.model_id)
        )
        return {model_id: int(version) for model_id, version in rows}

    def list_versions(
        self, model_id: str, *, offset: int = 0, limit: int = 50
    ) -> Page[ModelVersionRecord]:
        where = and_(
            ModelVersionRow.model_id == model_id, ModelVersionRow.tenant_id == self.tenant_id
        )
        total = (
            self._session.scalar(select(func.count()).select_from(ModelVersionRow).where(where))
            or 0
        )
        rows = self._session.scalars(
            select(ModelVersionRow)
            .where(where)
            .order_by(ModelVersionRow.version.desc())
            .offset(offset)
            .limit(limit)
        )
        return Page(items=[_version(r) for r in rows], total=total)

    def list_versions_below(
        self, model_id: str, *, below: int | None = None, limit: int = 50
    ) -> list[ModelVersionRecord]:
        """Keyset page: up to ``limit`` versions numbered below ``below``, highest first.
        New versions get higher numbers, so they never shift later pages."""
        where = and_(
            ModelVersionRow.model_id == model_id, ModelVersionRow.tenant_id == self.tenant_id
        )
        if below is not None:
            where = and_(where, ModelVersionRow.version < below)
        rows = self._session.scalars(
            select(ModelVersionRow)
            .where(where)
            .order_by(ModelVersionRow.version.desc())
            .limit(limit)
        )
        return [_version(r) for r in rows]

    def delete_version(self, model_id: str, version: int) -> bool:
        result = self._session.execute(
            delete(ModelVersionRow).where(
                ModelVersionRow.model_id == model_id,
                ModelVersionRow.tenant_id == self.tenant_id,
                ModelVersionRow.version == version,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def artifact_in_use(self, artifact_key: str) -> bool:
        count = self._session.scalar(
            select(func.count())
            .select_from(ModelVersionRow)
            .where(ModelVersionRow.artifact_key == artifact_key)
        )
        return bool(count)

    # -- aliases -----------------------------------------------------------------------------

    def aliases(self, model_ids: list[str]) -> list[AliasRecord]:
        if not model_ids:
            return []
        rows = self._session.scalars(
            select(ModelAliasRow)
            .where(ModelAliasRow.tenant_id == self.tenant_id, ModelAliasRow.model_id.in_(model_ids))
            .order_by(ModelAliasRow.name)
        )
        return [_alias(r) for r in rows]

    def get_alias(self, model_id: str, name: str) -> AliasRecord | None:
        row = self._session.scalar(
            select(ModelAliasRow).where(
                ModelAliasRow.model_id == model_id,
                ModelAliasRow.tenant_id == self.tenant_id,
                ModelAliasRow.name == name,
            )
        )
        return _alias(row) if row else None

    def create_alias(self, model_id: str, name: str, version: int, by: str) -> AliasRecord | None:
        """Insert the alias; None when it already exists (someone created it first)."""
        row = ModelAliasRow(
            model_id=model_id,
            name=name,
            tenant_id=self.tenant_id,
            version=version,
            etag=new_etag(),
            updated_by=by,
            updated_at=utcnow(),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
                self._session.flush()
        except IntegrityError:
            return None
        return _alias(row)

    def move_alias(
        self, model_id: str, name: str, version: int, by: str, *, expected_etag: str
    ) -> AliasRecord | None:
        """Compare-and-set on the alias's ETag; None when it changed (or vanished) meanwhile."""
        etag = new_etag()
        now = utcnow()
        result = self._session.execute(
            update(ModelAliasRow)
            .where(
                ModelAliasRow.model_id == model_id,
                ModelAliasRow.tenant_id == self.tenant_id,
                ModelAliasRow.name == name,
                ModelAliasRow.etag == expected_etag,
            )
            .values(version=version, etag=etag, updated_by=by, updated_at=now)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return AliasRecord(model_id, name, version, etag, by, now)

    def delete_alias(self, model_id: str, name: str, *, expected_etag: str | None) -> bool:
        conditions = [
            ModelAliasRow.model_id == model_id,
            ModelAliasRow.tenant_id == self.tenant_id,
            ModelAliasRow.name == name,
        ]
        if expected_etag is not None:
            conditions.append(ModelAliasRow.etag == expected_etag)
        result = self._session.execute(delete(ModelAliasRow).where(*conditions))
        return bool(result.rowcount)  # type: ignore[attr-defined]
