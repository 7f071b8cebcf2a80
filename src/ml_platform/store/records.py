"""Plain records the repositories return: the domain never sees an ORM row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from ml_platform.core.jobs import JobStatus


@dataclass(frozen=True)
class TenantRecord:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    is_admin: bool = False

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant_id: str
    name: str
    framework: str
    status: JobStatus
    spec: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    resource_usage: dict[str, float] | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
