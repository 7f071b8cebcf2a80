"""Feature store tables: entities, versioned feature views, materialization runs, and the
embedded online store (the latest value of each entity key of each view).

Definitions are tenant-scoped like every other resource (``FeatureRepository``). The online
rows are read by the serving plane too (``SqlOnlineRows``); a write only replaces a row with
an equal or newer event time, so a late materialization never undoes a newer push.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from ml_platform.core.errors import AlreadyExists
from ml_platform.core.ids import new_id
from ml_platform.store.base import Base, JSONType, UTCDateTime, utcnow
from ml_platform.store.records import Page

__all__ = [
    "EntityRecord",
    "FeatureRepository",
    "FeatureViewRecord",
    "MaterializationLeases",
    "MaterializationRecord",
    "OnlineRowRecord",
    "SqlOnlineRows",
]


class FeatureEntityRow(Base):
    __tablename__ = "feature_entities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_feature_entities_tenant_name"),
        Index("ix_feature_entities_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    join_keys: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FeatureViewRow(Base):
    """One version of a feature view; the highest version is the current definition."""

    __tablename__ = "feature_views"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version", name="uq_feature_views_tenant_name"),
        Index("ix_feature_views_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    entity: Mapped[str] = mapped_column(String(63))
    features: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    source: Mapped[dict[str, Any]] = mapped_column(JSONType)
    timestamp_field: Mapped[str] = mapped_column(String(255))
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FeatureMaterializationRow(Base):
    __tablename__ = "feature_materializations"
    __table_args__ = (
        Index("ix_feature_materializations_view", "tenant_id", "view", "started_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    view: Mapped[str] = mapped_column(String(63))
    view_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    keys_written: Mapped[int] = mapped_column(Integer, default=0)
    watermark_from: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    watermark_to: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # the process running it (migration 0016): it renews the lease while it works; a running
    # run whose lease has expired (or that has none) is claimed and run again by a sweep
    lease_owner: Mapped[str | None] = mapped_column(String(96), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class FeatureOnlineRow(Base):
    """The embedded online store: one row per (tenant, view, entity key)."""

    __tablename__ = "feature_online_rows"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    view: Mapped[str] = mapped_column(String(63), primary_key=True)
    entity_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    feature_values: Mapped[dict[str, Any]] = mapped_column(JSONType)
    event_ts: Mapped[datetime] = mapped_column(UTCDateTime())
    written_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class EntityRecord:
    tenant_id: str
    name: str
    join_keys: tuple[tuple[str, str], ...]  # (name, value type) in order
    description: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class FeatureViewRecord:
    tenant_id: str
    name: str
    version: int
    entity: str
    features: tuple[tuple[str, str], ...]  # (name, value type) in order
    source: dict[str, Any]
    timestamp_field: str
    ttl_seconds: int
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MaterializationRecord:
    id: str
    tenant_id: str
    view: str
    view_version: int
    status: str
    rows_read: int
    keys_written: int
    watermark_from: datetime | None
    watermark_to: datetime | None
    error: str | None
    created_by: str
    started_at: datetime
    finished_at: datetime | None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 1


@dataclass(frozen=True)
class OnlineRowRecord:
    entity_key: str
    values: dict[str, Any]
    event_ts: datetime


def _entity(row: FeatureEntityRow) -> EntityRecord:
    return EntityRecord(
        tenant_id=row.tenant_id,
        name=row.name,
        join_keys=tuple((k["name"], k["type"]) for k in row.join_keys),
        description=row.description or "",
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _view(row: FeatureViewRow, created_at: datetime) -> FeatureViewRecord:
    return FeatureViewRecord(
        tenant_id=row.tenant_id,
        name=row.name,
        version=row.version,
        entity=row.entity,
        features=tuple((f["name"], f["type"]) for f in row.features),
        source=dict(row.source),
        timestamp_field=row.timestamp_field,
        ttl_seconds=row.ttl_seconds,
        description=row.description or "",
        created_by=row.created_by,
        created_at=created_at,
        updated_at=row.created_at,
    )


def _run(row: FeatureMaterializationRow) -> MaterializationRecord:
    return MaterializationRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        view=row.view,
        view_version=row.view_version,
        status=row.status,
        rows_read=row.rows_read,
        keys_written=row.keys_written,
        watermark_from=row.watermark_from,
        watermark_to=row.watermark_to,
        error=row.error,
        created_by=row.created_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        attempts=row.attempts,
    )


class FeatureRepository:
    """Entities, feature views and materialization runs of one tenant."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self._session = session
        self.tenant_id = tenant_id

    # -- entities ------------------------------------------------------------------------------
    def add_entity(
        self,
        *,
        name: str,
        join_keys: Sequence[tuple[str, str]],
        description: str,
        created_by: str,
    ) -> EntityRecord:
        row = FeatureEntityRow(
            id=new_id("ent"),
            tenant_id=self.tenant_id,
            name=name,
            join_keys=[{"name": k, "type": t} for k, t in join_keys],
            description=description,
            created_by=created_by,
            created_at=utcnow(),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
                self._session.flush()
        except IntegrityError:
            raise AlreadyExists(f"entity {name!r} already exists") from None
        return _entity(row)

    def get_entity(self, name: str) -> EntityRecord | None:
        row = self._session.scalar(
            select(FeatureEntityRow).where(
                FeatureEntityRow.tenant_id == self.tenant_id, FeatureEntityRow.name == name
            )
        )
        return _entity(row) if row else None

    def entities(self, offset: int, limit: int) -> Page[EntityRecord]:
        where = [FeatureEntityRow.tenant_id == self.tenant_id]
        total = self._session.scalar(
            select(func.count()).select_from(FeatureEntityRow).where(*where)
        )
        rows = self._session.scalars(
            select(FeatureEntityRow)
            .where(*where)
            .order_by(FeatureEntityRow.created_at.desc(), FeatureEntityRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return Page(items=[_entity(r) for r in rows], total=total or 0)

    def delete_entity(self, name: str) -> bool:
        result = self._session.execute(
            delete(FeatureEntityRow).where(
                FeatureEntityRow.tenant_id == self.tenant_id, FeatureEntityRow.name == name
            )
        )
        return bool(getattr(result, "rowcount", 0))

    def views_of_entity(self, entity: str) -> list[str]:
        names = self._session.scalars(
            select(FeatureViewRow.name)
            .where(FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.entity == entity)
            .distinct()
            .order_by(FeatureViewRow.name)
        )
        return list(names)

    # -- feature views -------------------------------------------------------------------------
    def add_view_version(
        self,
        *,
        name: str,
        version: int,
        entity: str,
        features: Sequence[tuple[str, str]],
        source: dict[str, Any],
        timestamp_field: str,
        ttl_seconds: int,
        description: str,
        created_by: str,
    ) -> FeatureViewRecord:
        row = FeatureViewRow(
            id=new_id("fv"),
            tenant_id=self.tenant_id,
            name=name,
            version=version,
            entity=entity,
            features=[{"name": f, "type": t} for f, t in features],
            source=source,
            timestamp_field=timestamp_field,
            ttl_seconds=ttl_seconds,
            description=description,
            created_by=created_by,
            created_at=utcnow(),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
                self._session.flush()
        except IntegrityError:
            what = "already exists" if version == 1 else "changed concurrently; retry"
            raise AlreadyExists(f"feature view {name!r} {what}") from None
        first = self._first_created(name) if version > 1 else row.created_at
        return _view(row, first or row.created_at)

    def _first_created(self, name: str) -> datetime | None:
        return self._session.scalar(
            select(func.min(FeatureViewRow.created_at)).where(
                FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.name == name
            )
        )

    def get_view(self, name: str, version: int | None = None) -> FeatureViewRecord | None:
        """The current (highest) version, or the given one."""
        query = select(FeatureViewRow).where(
            FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.name == name
        )
        if version is not None:
            query = query.where(FeatureViewRow.version == version)
        row = self._session.scalar(query.order_by(FeatureViewRow.version.desc()).limit(1))
        if row is None:
            return None
        return _view(row, self._first_created(name) or row.created_at)

    def get_views(self, names: Iterable[str]) -> dict[str, FeatureViewRecord]:
        """The current version of each named view that exists (one query)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        latest = (
            select(
                FeatureViewRow.name,
                func.max(FeatureViewRow.version).label("version"),
                func.min(FeatureViewRow.created_at).label("first"),
            )
            .where(FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.name.in_(wanted))
            .group_by(FeatureViewRow.name)
            .subquery()
        )
        rows = self._session.execute(
            select(FeatureViewRow, latest.c.first)
            .join(
                latest,
                (FeatureViewRow.name == latest.c.name)
                & (FeatureViewRow.version == latest.c.version),
            )
            .where(FeatureViewRow.tenant_id == self.tenant_id)
        )
        return {row.name: _view(row, first) for row, first in rows}

    def views(self, offset: int, limit: int) -> Page[FeatureViewRecord]:
        names_query = (
            select(FeatureViewRow.name, func.min(FeatureViewRow.created_at).label("first"))
            .where(FeatureViewRow.tenant_id == self.tenant_id)
            .group_by(FeatureViewRow.name)
        )
        total = self._session.scalar(select(func.count()).select_from(names_query.subquery()))
        page = self._session.execute(
            names_query.order_by(
                func.min(FeatureViewRow.created_at).desc(), FeatureViewRow.name.desc()
            )
            .offset(offset)
            .limit(limit)
        ).all()
        found = self.get_views(name for name, _ in page)
        return Page(items=[found[name] for name, _ in page if name in found], total=total or 0)

    def view_versions(self, name: str) -> list[FeatureViewRecord]:
        rows = list(
            self._session.scalars(
                select(FeatureViewRow)
                .where(FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.name == name)
                .order_by(FeatureViewRow.version.desc())
            )
        )
        first = min((r.created_at for r in rows), default=None)
        return [_view(r, first or r.created_at) for r in rows]

    def delete_view(self, name: str) -> bool:
        """Every version, run and online row of the view (SQL online store)."""
        scope = (FeatureViewRow.tenant_id == self.tenant_id, FeatureViewRow.name == name)
        result = self._session.execute(delete(FeatureViewRow).where(*scope))
        self._session.execute(
            delete(FeatureMaterializationRow).where(
                FeatureMaterializationRow.tenant_id == self.tenant_id,
                FeatureMaterializationRow.view == name,
            )
        )
        self._session.execute(
            delete(FeatureOnlineRow).where(
                FeatureOnlineRow.tenant_id == self.tenant_id, FeatureOnlineRow.view == name
            )
        )
        return bool(getattr(result, "rowcount", 0))

    # -- materialization runs ------------------------------------------------------------------
    def watermark(self, view: str) -> datetime | None:
        """The newest event time a succeeded run has loaded (the next run starts after it)."""
        return self._session.scalar(
            select(func.max(FeatureMaterializationRow.watermark_to)).where(
                FeatureMaterializationRow.tenant_id == self.tenant_id,
                FeatureMaterializationRow.view == view,
                FeatureMaterializationRow.status == "succeeded",
            )
        )

    def start_run(
        self,
        *,
        view: str,
        view_version: int,
        watermark_from: datetime | None,
        created_by: str,
        owner: str | None = None,
        lease_seconds: float = 0.0,
    ) -> MaterializationRecord:
        """A ``running`` run held by ``owner`` for ``lease_seconds`` (it renews the lease)."""
        now = utcnow()
        row = FeatureMaterializationRow(
            id=new_id("mat"),
            tenant_id=self.tenant_id,
            view=view,
            view_version=view_version,
            status="running",
            rows_read=0,
            keys_written=0,
            watermark_from=watermark_from,
            watermark_to=None,
            error=None,
            created_by=created_by,
            started_at=now,
            finished_at=None,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds) if owner else None,
            attempts=1,
        )
        self._session.add(row)
        self._session.flush()
        return _run(row)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        rows_read: int,
        keys_written: int,
        watermark_to: datetime | None,
        error: str | None,
        owner: str | None = None,
    ) -> bool:
        """End a running run; with ``owner``, only while ``owner`` still holds it (a process
        whose lease was taken over does not overwrite the new holder's result)."""
        where = [
            FeatureMaterializationRow.tenant_id == self.tenant_id,
            FeatureMaterializationRow.id == run_id,
            FeatureMaterializationRow.status == "running",
        ]
        if owner is not None:
            where.append(FeatureMaterializationRow.lease_owner == owner)
        result = self._session.execute(
            update(FeatureMaterializationRow)
            .where(*where)
            .values(
                status=status,
                rows_read=rows_read,
                keys_written=keys_written,
                watermark_to=watermark_to,
                error=error,
                finished_at=utcnow(),
                lease_expires_at=None,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    def get_run(self, view: str, run_id: str) -> MaterializationRecord | None:
        row = self._session.scalar(
            select(FeatureMaterializationRow).where(
                FeatureMaterializationRow.tenant_id == self.tenant_id,
                FeatureMaterializationRow.view == view,
                FeatureMaterializationRow.id == run_id,
            )
        )
        return _run(row) if row else None

    def runs(self, view: str, offset: int, limit: int) -> Page[MaterializationRecord]:
        where = [
            FeatureMaterializationRow.tenant_id == self.tenant_id,
            FeatureMaterializationRow.view == view,
        ]
        total = self._session.scalar(
            select(func.count()).select_from(FeatureMaterializationRow).where(*where)
        )
        rows = self._session.scalars(
            select(FeatureMaterializationRow)
            .where(*where)
            .order_by(
                FeatureMaterializationRow.started_at.desc(), FeatureMaterializationRow.id.desc()
            )
            .offset(offset)
            .limit(limit)
        )
        return Page(items=[_run(r) for r in rows], total=total or 0)


def _lease_lapsed(now: datetime) -> ColumnElement[bool]:
    return or_(
        FeatureMaterializationRow.lease_expires_at.is_(None),
        FeatureMaterializationRow.lease_expires_at < now,
    )


class MaterializationLeases:
    """The leases of running materializations across tenants: renewed by the process that
    runs them, claimed by a sweep when their owner is gone."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def renew(self, owner: str, run_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend ``owner``'s leases on ``run_ids``; the ids it still holds."""
        if not run_ids:
            return set()
        runs = FeatureMaterializationRow
        self._session.execute(
            update(runs)
            .where(runs.id.in_(list(run_ids)), runs.status == "running", runs.lease_owner == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        held = self._session.scalars(
            select(runs.id).where(
                runs.id.in_(list(run_ids)), runs.status == "running", runs.lease_owner == owner
            )
        )
        return set(held)

    def abandoned(self, limit: int = 100) -> list[MaterializationRecord]:
        """Running runs whose lease has lapsed (or that never had one), oldest first."""
        runs = FeatureMaterializationRow
        rows = self._session.scalars(
            select(runs)
            .where(runs.status == "running", _lease_lapsed(utcnow()))
            .order_by(runs.started_at, runs.id)
            .limit(limit)
        )
        return [_run(r) for r in rows]

    def claim(self, run_id: str, owner: str, lease_seconds: float) -> bool:
        """Take over a lapsed run (one conditional UPDATE: of two sweepers, one wins)."""
        now = utcnow()
        runs = FeatureMaterializationRow
        result = self._session.execute(
            update(runs)
            .where(runs.id == run_id, runs.status == "running", _lease_lapsed(now))
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=runs.attempts + 1,
            )
        )
        return bool(getattr(result, "rowcount", 0))


_WRITE_BATCH = 500


class SqlOnlineRows:
    """Reads and newer-wins upserts of the embedded online store (any tenant: callers scope)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert(self, tenant_id: str, view: str, rows: Sequence[OnlineRowRecord]) -> None:
        if not rows:
            return
        dialect = self._session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = utcnow()
        for start in range(0, len(rows), _WRITE_BATCH):
            chunk = rows[start : start + _WRITE_BATCH]
            stmt = insert(FeatureOnlineRow).values(
                [
                    {
                        "tenant_id": tenant_id,
                        "view": view,
                        "entity_key": r.entity_key,
                        "feature_values": r.values,
                        "event_ts": r.event_ts,
                        "written_at": now,
                    }
                    for r in chunk
                ]
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["tenant_id", "view", "entity_key"],
                set_={
                    "feature_values": stmt.excluded.feature_values,
                    "event_ts": stmt.excluded.event_ts,
                    "written_at": stmt.excluded.written_at,
                },
                where=stmt.excluded.event_ts >= FeatureOnlineRow.event_ts,
            )
            self._session.execute(stmt)

    def read(
        self, tenant_id: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], OnlineRowRecord]:
        """Rows for ``(view, entity_key)`` pairs, in one query."""
        if not keys:
            return {}
        found = self._session.execute(
            select(
                FeatureOnlineRow.view,
                FeatureOnlineRow.entity_key,
                FeatureOnlineRow.feature_values,
                FeatureOnlineRow.event_ts,
            ).where(
                FeatureOnlineRow.tenant_id == tenant_id,
                tuple_(FeatureOnlineRow.view, FeatureOnlineRow.entity_key).in_(list(set(keys))),
            )
        )
        return {
            (view, key): OnlineRowRecord(key, dict(values), event_ts)
            for view, key, values, event_ts in found
        }

    def clear(self, tenant_id: str, view: str) -> None:
        self._session.execute(
            delete(FeatureOnlineRow).where(
                FeatureOnlineRow.tenant_id == tenant_id, FeatureOnlineRow.view == view
            )
        )
