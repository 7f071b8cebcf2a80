"""Deployments: rows and repositories (tenant-scoped for the API, global for serving)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.errors import AlreadyExists, FieldViolation, InvalidArgument
from ml_platform.core.ids import new_id
from ml_platform.store.base import Base, JSONType, UTCDateTime, is_foreign_key_violation, utcnow
from ml_platform.store.records import Page


class DeploymentRow(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_deployments_tenant_name"),
        Index("ix_deployments_tenant_model", "tenant_id", "model"),
        Index("ix_deployments_tenant_created", "tenant_id", "created_at", "id"),
        # the model must exist while it is deployed (migration 0006): the database settles
        # a deletion of the model racing the creation of a deployment
        ForeignKeyConstraint(
            ["tenant_id", "model"],
            ["models.tenant_id", "models.name"],
            name="fk_deployments_model_models",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    model: Mapped[str] = mapped_column(String(63))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(63), nullable=True)
    max_batch_size: Mapped[int] = mapped_column(Integer)
    max_batch_delay_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str] = mapped_column(Text, default="")
    serving_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # inputs looked up in feature views at prediction time (migration 0014); NULL: none
    feature_refs: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    entity_key: Mapped[str | None] = mapped_column(String(63), nullable=True)


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    tenant_id: str
    name: str
    model: str
    version: int | None
    alias: str | None
    max_batch_size: int
    max_batch_delay_ms: float
    status: str
    status_message: str
    serving_version: int | None
    generation: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    feature_refs: tuple[str, ...] = ()
    entity_key: str | None = None

    @property
    def reference(self) -> str:
        """What the deployment serves: a version number, an alias, or ``latest``."""
        if self.version is not None:
            return str(self.version)
        return self.alias or "latest"


def _record(row: DeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        model=row.model,
        version=row.version,
        alias=row.alias,
        max_batch_size=row.max_batch_size,
        max_batch_delay_ms=row.max_batch_delay_ms,
        status=row.status,
        status_message=row.status_message or "",
        serving_version=row.serving_version,
        generation=row.generation,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        feature_refs=tuple(row.feature_refs or ()),
        entity_key=row.entity_key,
    )


class DeploymentRepository:
    """Every query is scoped to one tenant."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self._session = session
        self.tenant_id = tenant_id

    def add(
        self,
        *,
        name: str,
        model: str,
        version: int | None,
        alias: str | None,
        max_batch_size: int,
        max_batch_delay_ms: float,
        created_by: str,
        feature_refs: list[str] | None = None,
        entity_key: str | None = None,
    ) -> DeploymentRecord:
        now = utcnow()
        row = DeploymentRow(
            id=new_id("dep"),
            tenant_id=self.tenant_id,
            name=name,
            model=model,
            version=version,
            alias=alias,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            status="pending",
            status_message="waiting for the serving plane to load it",
            serving_version=None,
            generation=1,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            feature_refs=feature_refs or None,
            entity_key=entity_key,
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
                self._session.flush()
        except IntegrityError as exc:
            if is_foreign_key_violation(exc):  # the model was deleted meanwhile
                raise InvalidArgument(
                    f"model {model!r} not found in your registry",
                    [FieldViolation("body.model", "no such model")],
                ) from None
            raise AlreadyExists(f"deployment {name!r} already exists") from exc
        return _record(row)

    def get(self, name: str) -> DeploymentRecord | None:
        row = self._row(name)
        return _record(row) if row else None

    def _row(self, name: str) -> DeploymentRow | None:
        return self._session.scalar(
            select(DeploymentRow).where(
                DeploymentRow.tenant_id == self.tenant_id, DeploymentRow.name == name
            )
        )

    def search(self, *, model: str | None, offset: int, limit: int) -> Page[DeploymentRecord]:
        where: list[Any] = [DeploymentRow.tenant_id == self.tenant_id]
        if model is not None:
            where.append(DeploymentRow.model == model)
        total = self._session.scalar(select(func.count()).select_from(DeploymentRow).where(*where))
        rows = self._session.scalars(
            select(DeploymentRow)
            .where(*where)
            .order_by(DeploymentRow.created_at.desc(), DeploymentRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return Page(items=[_record(r) for r in rows], total=total or 0)

    def search_after(
        self, *, model: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[DeploymentRecord]:
        """Keyset page: up to ``limit`` deployments strictly after ``after`` = (created_at, id)
        in ``created_at desc, id desc`` order; new ones never shift later pages."""
        where: list[Any] = [DeploymentRow.tenant_id == self.tenant_id]
        if model is not None:
            where.append(DeploymentRow.model == model)
        if after is not None:
            created_at, deployment_id = after
            where.append(
                or_(
                    DeploymentRow.created_at < created_at,
                    and_(DeploymentRow.created_at == created_at, DeploymentRow.id < deployment_id),
                )
            )
        rows = self._session.scalars(
            select(DeploymentRow)
            .where(*where)
            .order_by(DeploymentRow.created_at.desc(), DeploymentRow.id.desc())
            .limit(limit)
        )
        return [_record(r) for r in rows]

    def for_model(self, model: str) -> list[DeploymentRecord]:
        rows = self._session.scalars(
            select(DeploymentRow).where(
                DeploymentRow.tenant_id == self.tenant_id, DeploymentRow.model == model
            )
        )
        return [_record(r) for r in rows]

    def change(self, name: str, **fields: Any) -> DeploymentRecord | None:
        """Apply a spec change; bumps ``generation`` so the serving plane reloads."""
        row = self._row(name)
        if row is None:
            return None
        for key, value in fields.items():
            setattr(row, key, value)
        row.generation += 1
        row.status = "pending"
        row.status_message = "change accepted; waiting for the serving plane"
        row.updated_at = utcnow()
        self._session.flush()
        return _record(row)

    def delete(self, name: str) -> bool:
        row = self._row(name)
        if row is None:
            return False
        self._session.delete(row)
        self._session.flush()
        return True


class ServingDeploymentQueries:
    """Cross-tenant reads and status writes for the serving plane (never used by routes)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def all(self) -> list[DeploymentRecord]:
        rows = self._session.scalars(select(DeploymentRow).order_by(DeploymentRow.id))
        return [_record(r) for r in rows]

    def record_status(
        self, tenant_id: str, name: str, *, status: str, message: str, serving_version: int | None
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "status_message": message,
            "updated_at": utcnow(),
        }
        if serving_version is not None:
            values["serving_version"] = serving_version
        unchanged = and_(
            DeploymentRow.status == status,
            DeploymentRow.status_message == message,
            DeploymentRow.serving_version == serving_version
            if serving_version is not None
            else true(),
        )
        self._session.execute(
            update(DeploymentRow)
            .where(DeploymentRow.tenant_id == tenant_id, DeploymentRow.name == name, ~unchanged)
            .values(**values)
        )
