"""Tenants and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, ForeignKey, Index, String, false, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.core.errors import AlreadyExists, NotFound
from ml_platform.core.ids import new_id
from ml_platform.store.base import Base, UTCDateTime, utcnow
from ml_platform.store.records import ApiKeyRecord, TenantRecord


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_tenant_id", "tenant_id"),
        Index("ix_api_keys_prefix", "prefix"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # an administrator's key (migration 0008_quotas): may call /v1/admin/... for any tenant
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


def _tenant(row: TenantRow | Any) -> TenantRecord:
    return TenantRecord(id=row.id, name=row.name, created_at=row.created_at)


def _key(row: ApiKeyRow | Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        is_admin=row.is_admin,
    )


# -- the per-request reads of authentication, through Core ------------------------------------
# (an ORM session costs ~5x the query itself; these run on every authenticated request)


def key_candidates(connection: Connection, prefix: str) -> list[tuple[ApiKeyRecord, str]]:
    """Keys with this public prefix and their stored digests (to compare in constant time)."""
    table = ApiKeyRow.__table__
    rows = connection.execute(select(table).where(table.c.prefix == prefix))
    return [(_key(r), r.key_hash) for r in rows]


def tenant_exists(connection: Connection, tenant_id: str) -> bool:
    table = TenantRow.__table__
    return connection.execute(select(table.c.id).where(table.c.id == tenant_id)).first() is not None


class TenantRepository:
    """Tenants are global: only admin paths and authentication use this repository."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def create(self, name: str) -> TenantRecord:
        row = TenantRow(id=new_id("ten"), name=name, created_at=utcnow())
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(f"tenant {name!r} already exists") from exc
        return _tenant(row)

    def get(self, tenant_id: str) -> TenantRecord | None:
        row = self._session.get(TenantRow, tenant_id)
        return _tenant(row) if row else None

    def by_name(self, name: str) -> TenantRecord | None:
        row = self._session.scalar(select(TenantRow).where(TenantRow.name == name))
        return _tenant(row) if row else None

    def require_by_name(self, name: str) -> TenantRecord:
        tenant = self.by_name(name)
        if tenant is None:
            raise NotFound(f"tenant {name!r} not found")
        return tenant

    def all(self) -> list[TenantRecord]:
        rows = self._session.scalars(select(TenantRow).order_by(TenantRow.created_at))
        return [_tenant(r) for r in rows]


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def create(
        self, tenant_id: str, name: str, prefix: str, key_hash: str, *, is_admin: bool = False
    ) -> ApiKeyRecord:
        row = ApiKeyRow(
            id=new_id("key"),
            tenant_id=tenant_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            created_at=utcnow(),
            is_admin=is_admin,
        )
        self._session.add(row)
        self._session.flush()
        return _key(row)

    def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self._session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
        return _key(row) if row else None

    def revoke(self, key_id: str) -> ApiKeyRecord:
        row = self._session.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            self._session.flush()
        return _key(row)

    def for_tenant(self, tenant_id: str) -> list[ApiKeyRecord]:
        rows = self._session.scalars(
            select(ApiKeyRow).where(ApiKeyRow.tenant_id == tenant_id).order_by(ApiKeyRow.created_at)
        )
        return [_key(r) for r in rows]

    def touch(self, key_id: str) -> None:
        self._session.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=utcnow())
        )
