"""Training-job wire models: exactly the seed's contract, plus documented optional additions."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from ml_platform.core.jobs import JobStatus
from ml_platform.schemas._types import (
    SAFE_TEXT_PATTERN,
    TAG_MAP_SCHEMA,
    JsonObject,
    RequestModel,
    SafeStr,
    StrMap,
    check_tags,
)

ENV_NAME_SCHEMA: dict[str, Any] = {
    "pattern": "^[^=" + SAFE_TEXT_PATTERN[3:-3] + "]{1,255}$",
    "not": {"pattern": "^ML_PLATFORM_"},
}
"""``_check_env_vars`` as JSON Schema: 1..255 characters, no '=', no ``ML_PLATFORM_`` prefix."""

__all__ = [
    "ComputeType",
    "FrameworkType",
    "InstanceConfig",
    "JobListResponse",
    "JobStatus",
    "StatusTransition",
    "TrainingJob",
    "TrainingJobSpec",
]

JOB_NAME_PATTERN = r"^[a-z0-9-]+$"


class ComputeType(str, Enum):
    """The kind of machine a job asks for."""

    CPU = "cpu"
    GPU = "gpu"
    TPU = "tpu"


class FrameworkType(str, Enum):
    """The ML framework a job's code uses (it picks the runtime image)."""

    PYTORCH = "pytorch"
    TENSORFLOW = "tensorflow"
    SKLEARN = "sklearn"
    XGBOOST = "xgboost"


class InstanceConfig(RequestModel):
    """Compute a job asks for."""

    compute_type: ComputeType = ComputeType.CPU
    cpu_cores: int = Field(4, ge=1, le=96, description="CPU cores")
    memory_gb: int = Field(16, ge=1, le=768, description="Memory in GB")
    gpu_count: int | None = Field(
        None, ge=0, le=8, validate_default=True, description="Number of GPUs"
    )
    gpu_type: SafeStr | None = Field(
        None, max_length=64, description="GPU type (e.g., nvidia-a100)"
    )

    @field_validator("gpu_count")
    @classmethod
    def _gpu_count_matches_compute_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("compute_type") is ComputeType.GPU and not value:
            raise ValueError("gpu_count must be > 0 when compute_type is GPU")
        return value


_SPEC_EXAMPLE: dict[str, Any] = {
    "name": "churn-model-v1",
    "framework": "sklearn",
    "docker_image": "company/ml-train:sklearn-1.5",
    "entrypoint": "python train.py",
    "data_path": "data/churn/train.csv",
    "output_path": "models/churn/v1/",
    "compute": {"compute_type": "cpu", "cpu_cores": 2, "memory_gb": 4},
    "hyperparameters": {"n_estimators": 100, "max_depth": 8},
    "env_vars": {"WANDB_MODE": "offline"},
    "tags": {"team": "ml-analytics", "project": "customer-retention"},
}


class TrainingJobSpec(RequestModel):
    """What the user asked for. `env_vars` is write-only: it is never returned."""

    model_config = ConfigDict(json_schema_extra={"example": _SPEC_EXAMPLE})

    name: str = Field(..., min_length=1, max_length=63, pattern=JOB_NAME_PATTERN)
    framework: FrameworkType
    docker_image: SafeStr = Field(
        ..., min_length=1, max_length=512, description="Docker image containing training code"
    )
    entrypoint: SafeStr = Field(
        "python train.py", min_length=1, max_length=4096, description="Command to execute"
    )
    data_path: SafeStr = Field(
        ..., min_length=1, max_length=2048, description="Path or URI of the training data"
    )
    output_path: SafeStr = Field(
        ..., min_length=1, max_length=2048, description="Path or URI for the model output"
    )
    compute: InstanceConfig = Field(default_factory=InstanceConfig)
    hyperparameters: JsonObject = Field(default_factory=dict)
    env_vars: StrMap = Field(
        default_factory=dict,
        exclude=True,
        description="Environment variables for the job (write-only: never returned)",
        json_schema_extra={"writeOnly": True, "propertyNames": ENV_NAME_SCHEMA},
    )
    tags: StrMap = Field(
        default_factory=dict,
        description="Custom tags for organizing jobs",
        json_schema_extra=TAG_MAP_SCHEMA,
    )
    tenant_id: SafeStr | None = Field(
        None,
        max_length=64,
        description="Optional: the tenant the job is for; must be the caller's own tenant",
    )
    # Optional additions (v1 compatible): code, limits and retries of the job runtime.
    source: str | None = Field(
        None,
        max_length=71,
        pattern=r"^(sha256:)?[0-9a-f]{64}$",
        description="Code package to run the entrypoint from (`sha256:...` from "
        "`POST /v1/code-packages`)",
    )
    max_runtime_seconds: int | None = Field(
        None, ge=1, le=30 * 24 * 3600, description="Fail the job when it runs longer than this"
    )
    max_retries: int = Field(
        0, ge=0, le=10, description="Retry a failed attempt up to this many times, with backoff"
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)

    @field_validator("env_vars")
    @classmethod
    def _check_env_vars(cls, env_vars: dict[str, str]) -> dict[str, str]:
        for key in env_vars:
            if not key or "=" in key or len(key) > 255 or key.startswith("ML_PLATFORM_"):
                raise ValueError(
                    f"invalid variable name {key[:64]!r} "
                    "(1..255 chars, no '=', no ML_PLATFORM_ prefix)"
                )
        return env_vars


class StatusTransition(BaseModel):
    """One entry of a job's status history."""

    status: JobStatus
    at: datetime
    reason: str | None = None
    attempt: int | None = None


class TrainingJob(BaseModel):
    """A training job as the platform sees it. Server-set fields are read-only."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "job_01jdx3m8c5r7v2k9w4q6y8z0ab",
                "spec": {k: v for k, v in _SPEC_EXAMPLE.items() if k != "env_vars"},
                "status": "pending",
                "tenant_id": "ten_01jdx3m8c5r7v2k9w4q6y8z0cd",
                "created_by": "default-key",
                "created_at": "2026-11-26T10:00:00Z",
                "started_at": None,
                "completed_at": None,
                "error_message": None,
                "metrics": {},
                "resource_usage": None,
            }
        }
    )

    id: str = Field(json_schema_extra={"readOnly": True})
    spec: TrainingJobSpec
    status: JobStatus = Field(json_schema_extra={"readOnly": True})
    tenant_id: str = Field(json_schema_extra={"readOnly": True})
    created_by: str = Field(json_schema_extra={"readOnly": True})
    created_at: datetime = Field(json_schema_extra={"readOnly": True})
    started_at: datetime | None = Field(None, json_schema_extra={"readOnly": True})
    completed_at: datetime | None = Field(None, json_schema_extra={"readOnly": True})
    error_message: str | None = Field(None, json_schema_extra={"readOnly": True})
    metrics: dict[str, float] = Field(default_factory=dict, json_schema_extra={"readOnly": True})
    resource_usage: dict[str, float] | None = Field(None, json_schema_extra={"readOnly": True})
    # Optional additions (v1 compatible): why a job waits, and how it got where it is.
    pending_reason: str | None = Field(
        None,
        description="While pending: why the job is not running yet",
        json_schema_extra={"readOnly": True},
    )
    queue_position: int | None = Field(
        None,
        description="While pending: how many jobs start before this one",
        json_schema_extra={"readOnly": True},
    )
    attempt: int | None = Field(
        None,
        description="The current (or last) attempt, from 1",
        json_schema_extra={"readOnly": True},
    )
    status_history: list[StatusTransition] = Field(
        default_factory=list,
        description="Every status transition with its time and reason",
        json_schema_extra={"readOnly": True},
    )


class JobListResponse(BaseModel):
    """A page of the tenant's training jobs, newest first (`page`, `page_size`, `total`)."""

    jobs: list[TrainingJob]
    total: int
    page: int
    page_size: int
    has_more: bool
