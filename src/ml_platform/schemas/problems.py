"""RFC 9457 problem details, the one error body of every REST route."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One offending field of a rejected request: where it is and what is wrong with it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"path": "body.compute.cpu_cores", "message": "must be >= 1"}]
        }
    )

    path: str = Field(description="Where the bad value is, e.g. `body.compute.cpu_cores`")
    message: str


class Problem(BaseModel):
    """An error response (`application/problem+json`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://ml-platform.dev/problems/not-found",
                "title": "Not Found",
                "status": 404,
                "detail": "training job 'job_01j...' not found",
                "instance": "/v1/jobs/training/job_01j...",
                "code": "NOT_FOUND",
                "request_id": "req_01j...",
                "errors": [],
            }
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    request_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
    limit: str | None = Field(
        default=None,
        description="`QUOTA_EXCEEDED` only: the tenant quota that refused the request",
        examples=["max_queued_jobs"],
    )
    limit_value: float | None = Field(
        default=None, description="`QUOTA_EXCEEDED` only: the quota's value", examples=[10]
    )
    usage: float | None = Field(
        default=None,
        description="`QUOTA_EXCEEDED` only: what the tenant held when it was checked",
        examples=[10],
    )
