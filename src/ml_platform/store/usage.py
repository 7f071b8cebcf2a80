"""API usage per tenant: how many requests each tenant made, per day, API version and route.

One row per (UTC day, tenant, API version, method, route template) holding a running count.
Writers never insert a row per request: the REST layer counts in memory and ``add`` folds a
batch of increments into the table with one atomic upsert per key (``INSERT ... ON CONFLICT
DO UPDATE SET count = count + excluded.count``, SQLite and PostgreSQL alike), so several
replicas flushing at once never lose an increment.

``tenant_id`` is ``""`` for requests that authenticated as nobody (``ANONYMOUS``); routes are
templates (``/v1/jobs/training/{job_id}``) or ``unmatched``, never raw paths, so the table
stays small whatever callers send. No foreign key to tenants: usage outlives its tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from ml_platform.store.base import Base, UTCDateTime, utcnow
from ml_platform.store.db import Database

ANONYMOUS = ""
WIDTHS = {"tenant_id": 40, "api_version": 8, "method": 10, "route": 255}


class ApiUsageRow(Base):
    __tablename__ = "api_usage"
    __table_args__ = (Index("ix_api_usage_tenant_day", "tenant_id", "day"),)

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_version: Mapped[str] = mapped_column(String(8), primary_key=True)
    method: Mapped[str] = mapped_column(String(10), primary_key=True)
    route: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, order=True)
class UsageKey:
    """What one counter counts."""

    day: date
    tenant_id: str
    api_version: str
    method: str
    route: str

    def cut(self) -> UsageKey:
        """The key with every part fitted to its column."""
        return UsageKey(
            self.day,
            self.tenant_id[: WIDTHS["tenant_id"]],
            self.api_version[: WIDTHS["api_version"]],
            self.method[: WIDTHS["method"]],
            self.route[: WIDTHS["route"]],
        )


@dataclass(frozen=True)
class UsageCount:
    key: UsageKey
    count: int
    last_seen_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "day": self.key.day.isoformat(),
            "tenant_id": self.key.tenant_id or None,
            "api_version": self.key.api_version,
            "method": self.key.method,
            "route": self.key.route,
            "count": self.count,
            "last_seen_at": self.last_seen_at,
        }


class UsageStore:
    """Adds batches of increments and reads the totals; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, increments: Mapping[UsageKey, int], seen_at: datetime | None = None) -> None:
        """Fold ``increments`` into the table (keys in a fixed order: no deadlock between
        replicas flushing the same keys)."""
        if not increments:
            return
        now = seen_at or utcnow()
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        merged: dict[UsageKey, int] = {}
        for key, count in increments.items():
            fitted = key.cut()
            merged[fitted] = merged.get(fitted, 0) + count
        with self._db.transaction() as session:
            for key in sorted(merged):
                statement = insert(ApiUsageRow).values(
                    day=key.day,
                    tenant_id=key.tenant_id,
                    api_version=key.api_version,
                    method=key.method,
                    route=key.route,
                    count=merged[key],
                    last_seen_at=now,
                )
                statement = statement.on_conflict_do_update(
                    index_elements=["day", "tenant_id", "api_version", "method", "route"],
                    set_={
                        "count": ApiUsageRow.count + statement.excluded.count,
                        "last_seen_at": statement.excluded.last_seen_at,
                    },
                )
                session.execute(statement)

    def counts(
        self,
        *,
        tenant_id: str | None = None,
        since: date | None = None,
        api_version: str | None = None,
    ) -> list[UsageCount]:
        """Per day, tenant, version, method and route: newest day first, then busiest."""
        query = select(ApiUsageRow)
        if tenant_id is not None:
            query = query.where(ApiUsageRow.tenant_id == tenant_id)
        if since is not None:
            query = query.where(ApiUsageRow.day >= since)
        if api_version is not None:
            query = query.where(ApiUsageRow.api_version == api_version)
        query = query.order_by(
            ApiUsageRow.day.desc(),
            ApiUsageRow.count.desc(),
            ApiUsageRow.tenant_id,
            ApiUsageRow.api_version,
            ApiUsageRow.route,
            ApiUsageRow.method,
        )
        with self._db.read() as session:
            return [
                UsageCount(
                    UsageKey(row.day, row.tenant_id, row.api_version, row.method, row.route),
                    int(row.count),
                    row.last_seen_at,
                )
                for row in session.scalars(query)
            ]
