"""Audit wire models: what ``GET /v1/admin/audit`` answers (administrators only)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AuditEventOut", "AuditEventPage"]


class AuditEventOut(BaseModel):
    """Who did what: one mutating request or one authentication failure. Never a secret: an
    API key appears as its public prefix (`mlp_1a2b3c4d`), a JWT as `jwt`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "occurred_at": "2026-12-01T09:30:00Z",
                    "tenant_id": "ten_01jdx3m8c5r7v2k9w4q6y8z0cd",
                    "principal": "ci-key",
                    "credential": "mlp_1a2b3c4d",
                    "action": "jobs.create",
                    "resource": "job_01jdx3p2m4n6q8r0s2t4v6w8y0",
                    "method": "POST",
                    "route": "/v1/jobs/training",
                    "outcome": 201,
                    "request_id": "req_5f2a9c0e1b3d4f6a7c8e9d0b",
                    "client": "10.0.0.7",
                }
            ]
        }
    )

    id: int = Field(description="Increasing event number (the listing order, newest first)")
    occurred_at: datetime
    tenant_id: str | None = Field(description="The caller's tenant (none on auth failures)")
    principal: str | None = Field(description="API key name or JWT subject")
    credential: str | None = Field(description="Public key prefix, `api_key`, or `jwt`")
    action: str = Field(description="`<collection>.<verb>` or `auth.failed`")
    resource: str | None = Field(description="The resource acted on (its path parameters)")
    method: str
    route: str | None = Field(description="The route template, never the raw path")
    outcome: int = Field(description="HTTP status answered")
    request_id: str | None
    client: str | None = Field(description="The client's address")


class AuditEventPage(BaseModel):
    """One page of audit events, newest first; pass `next_page_token` back for the next page."""

    events: list[AuditEventOut]
    next_page_token: str | None = Field(
        description="Pass as `page_token` (with the same filters) for the next page; null on "
        "the last one"
    )
