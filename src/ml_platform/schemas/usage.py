"""API usage wire models: what ``GET /v1/admin/usage`` answers (administrators only)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["UsageCountOut", "UsagePage"]


class UsageCountOut(BaseModel):
    """How often one tenant called one route of one API version on one UTC day."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "day": "2026-12-01",
                    "tenant_id": "ten_01jdx3m8c5r7v2k9w4q6y8z0cd",
                    "tenant": "team-a",
                    "api_version": "v1",
                    "method": "GET",
                    "route": "/v1/jobs/training/{job_id}",
                    "count": 1280,
                    "last_seen_at": "2026-12-01T17:59:58Z",
                }
            ]
        }
    )

    day: date = Field(description="UTC day")
    tenant_id: str | None = Field(description="Null for requests that authenticated as nobody")
    tenant: str | None = Field(description="The tenant's name (null once deleted, or none)")
    api_version: str = Field(description="`v1` or `v2`")
    method: str
    route: str = Field(description="Route template (`unmatched` when no route matched)")
    count: int = Field(description="Requests answered")
    last_seen_at: datetime = Field(description="When counts were last added (flush time)")


class UsagePage(BaseModel):
    """API use per tenant, UTC day, API version and route template (administrators only)."""

    usage: list[UsageCountOut]
    total: int
    page: int
    page_size: int
    has_more: bool
