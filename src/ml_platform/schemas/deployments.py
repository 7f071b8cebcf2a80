"""Deployment wire models: a model version (or an alias it follows) served under a name."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml_platform.schemas._types import PositiveInt32, RequestModel

__all__ = [
    "Deployment",
    "DeploymentCreate",
    "DeploymentListResponse",
    "DeploymentState",
    "DeploymentUpdate",
]

DEPLOYMENT_NAME_PATTERN = r"^[a-z0-9-]+$"
REF_PATTERN = r"^[a-z][a-z0-9-]*$"
FEATURE_REF_PATTERN = r"^[^:\s]{1,200}:[^:\s]{1,200}$"
JOIN_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

FeatureRefs = Annotated[
    list[Annotated[str, Field(pattern=FEATURE_REF_PATTERN)]] | None,
    Field(
        None,
        min_length=1,
        max_length=1000,
        description="Inputs looked up online at prediction time, as `<view>:<feature>`: a "
        "Predict request carrying only `entity_key` gets these features from the feature "
        "views (the model's inputs are matched by feature name); needs `entity_key`",
    ),
]
EntityKey = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=63,
        pattern=JOIN_KEY_PATTERN,
        description="The join key (of the feature views' entity) a Predict request carries as "
        "a feature to have `feature_refs` looked up; needs `feature_refs`",
    ),
]


class DeploymentState(str, Enum):
    """Where a deployment is: `pending` -> `loading` -> `ready`, or `failed`."""

    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class _Batching(RequestModel):
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="Most requests gathered into one model call"
    )
    max_batch_delay_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Longest a request waits for others to join its batch (never when idle)",
    )


_VERSION_AND_ALIAS: dict[str, Any] = {
    "description": "give either version or alias, not both",
    "required": ["version", "alias"],
    "properties": {"version": {"type": "integer"}, "alias": {"type": "string"}},
}
"""The schema form of ``_one_reference``: a body naming both a version and an alias is refused."""


class DeploymentCreate(_Batching):
    """Serve `model` at `version`, or follow `alias` (default: `latest`) as it moves."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "churn",
                "model": "churn",
                "alias": "production",
                "max_batch_size": 64,
            },
            "not": _VERSION_AND_ALIAS,
            "dependentRequired": {
                "feature_refs": ["entity_key"],
                "entity_key": ["feature_refs"],
            },
        },
    )

    name: str = Field(..., min_length=1, max_length=63, pattern=DEPLOYMENT_NAME_PATTERN)
    model: str = Field(..., min_length=1, max_length=63, pattern=DEPLOYMENT_NAME_PATTERN)
    version: PositiveInt32 | None = Field(None, description="A fixed version number")
    alias: str | None = Field(
        None, min_length=1, max_length=63, pattern=REF_PATTERN, description="An alias to follow"
    )
    feature_refs: FeatureRefs = None
    entity_key: EntityKey = None

    @model_validator(mode="after")
    def _one_reference(self) -> DeploymentCreate:
        if self.version is not None and self.alias is not None:
            raise ValueError("give either version or alias, not both")
        if (self.feature_refs is None) != (self.entity_key is None):
            raise ValueError("give feature_refs and entity_key together, or neither")
        return self


class DeploymentUpdate(RequestModel):
    """Roll to another version or alias, or change batching. Absent fields stay as they are."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"version": 3}, "not": _VERSION_AND_ALIAS}
    )

    version: PositiveInt32 | None = None
    alias: str | None = Field(None, min_length=1, max_length=63, pattern=REF_PATTERN)
    max_batch_size: int | None = Field(None, ge=1, le=4096)
    max_batch_delay_ms: float | None = Field(None, ge=0, le=1000)

    @model_validator(mode="after")
    def _one_reference(self) -> DeploymentUpdate:
        if self.version is not None and self.alias is not None:
            raise ValueError("give either version or alias, not both")
        return self


class Deployment(BaseModel):
    """A model version served over gRPC and V2 REST under a stable name."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "dep_01jdx3m8c5r7v2k9w4q6y8z0ab",
                "name": "churn",
                "model": "churn",
                "version": None,
                "alias": "production",
                "target_version": 3,
                "serving_version": 3,
                "status": "ready",
                "status_message": "",
                "max_batch_size": 64,
                "max_batch_delay_ms": 2.0,
                "created_by": "default-admin",
                "created_at": "2026-11-26T10:00:00Z",
                "updated_at": "2026-11-26T10:00:05Z",
            }
        }
    )

    id: str = Field(json_schema_extra={"readOnly": True})
    name: str
    model: str
    version: int | None = Field(None, description="The pinned version, if any")
    alias: str | None = Field(None, description="The alias followed, if any")
    target_version: int | None = Field(
        None,
        description="The version the deployment should serve now",
        json_schema_extra={"readOnly": True},
    )
    serving_version: int | None = Field(
        None, description="The version answering requests now", json_schema_extra={"readOnly": True}
    )
    status: DeploymentState = Field(json_schema_extra={"readOnly": True})
    status_message: str = Field("", json_schema_extra={"readOnly": True})
    max_batch_size: int
    max_batch_delay_ms: float
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})
    updated_at: datetime = Field(json_schema_extra={"readOnly": True})
    feature_refs: list[str] = Field(
        default_factory=list, description="Inputs looked up online at prediction time, if any"
    )
    entity_key: str | None = Field(
        None, description="The join key a Predict request carries to have them looked up"
    )


class DeploymentListResponse(BaseModel):
    """A page of the tenant's deployments (`page`, `page_size`, `total`)."""

    deployments: list[Deployment]
    total: int
    page: int
    page_size: int
    has_more: bool
