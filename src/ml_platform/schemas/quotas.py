"""Tenant quotas on the wire: each limit beside the usage it bounds, and the admin overrides."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from ml_platform.schemas._types import INT32_MAX, RequestModel

INT64_MAX = 2**63 - 1


class QuotaKind(str, Enum):
    """``delay``: over it a job waits (pending, with the reason); ``hard``: over it a creation
    is refused with 429 ``QUOTA_EXCEEDED``."""

    DELAY = "delay"
    HARD = "hard"


class QuotaSource(str, Enum):
    """Where the limit in force comes from: the platform default or this tenant's override."""

    DEFAULT = "default"
    OVERRIDE = "override"


class QuotaItem(BaseModel):
    """One quota: its limit (``null``: no limit) beside the tenant's current usage."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "max_queued_jobs",
                "limit": 20,
                "usage": 3,
                "unit": "jobs",
                "kind": "hard",
                "source": "override",
                "description": "Jobs waiting to start (pending)",
            }
        }
    )

    name: str = Field(description="The quota's name, as in PUT/PATCH and `mlp admin quota set`")
    limit: int | float | None = Field(description="The limit in force; `null`: no limit")
    usage: int | float = Field(description="What the tenant holds now")
    unit: str = Field(description="What `limit` and `usage` count")
    kind: QuotaKind
    source: QuotaSource
    description: str


class TenantQuotas(BaseModel):
    """A tenant's quotas, each limit beside the current usage."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "tenant_id": "ten_01jdx3m8c5r7v2k9w4q6y8z0ab",
                "tenant_name": "team-a",
                "quotas": [
                    {
                        "name": "max_concurrent_jobs",
                        "limit": 4,
                        "usage": 1,
                        "unit": "jobs",
                        "kind": "delay",
                        "source": "default",
                        "description": "Jobs running at once",
                    }
                ],
            }
        }
    )

    tenant_id: str
    tenant_name: str
    quotas: list[QuotaItem] = Field(description="Every quota, in a fixed order")


class TenantQuotaOverrides(RequestModel):
    """A tenant's quota overrides. PUT sets them all (an absent or `null` field: the platform
    default); PATCH changes only the fields given (`null`: back to the platform default)."""

    model_config = ConfigDict(json_schema_extra={"example": {"max_queued_jobs": 20, "max_gpus": 2}})

    max_concurrent_jobs: int | None = Field(
        None, ge=0, le=INT32_MAX, description="Jobs running at once (delay)"
    )
    max_gpus: int | None = Field(
        None, ge=0, le=INT32_MAX, description="GPUs the tenant's running jobs hold (delay)"
    )
    max_cpu_cores: float | None = Field(
        None, ge=0, le=1e6, description="CPU cores the tenant's running jobs hold (delay)"
    )
    max_memory_gb: float | None = Field(
        None, ge=0, le=1e9, description="Memory (GB) the tenant's running jobs hold (delay)"
    )
    max_queued_jobs: int | None = Field(
        None, ge=0, le=INT32_MAX, description="Jobs waiting to start, pending (hard)"
    )
    max_deployments: int | None = Field(None, ge=0, le=INT32_MAX, description="Deployments (hard)")
    max_storage_bytes: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="Bytes stored: data files, code packages, model artifacts (hard)",
    )
