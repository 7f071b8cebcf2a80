"""Wire models of the job runtime: logs, metric series, code packages, stream messages."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ml_platform.core.jobs import JobStatus

__all__ = [
    "CodePackage",
    "JobLogLine",
    "JobLogsResponse",
    "MetricHistoryResponse",
    "MetricPointOut",
    "StreamEnd",
    "StreamLog",
    "StreamMetric",
    "StreamStatus",
]


class JobLogLine(BaseModel):
    """One line of a job's log. `id` is its 1-based line number (the SSE event id)."""

    id: int
    timestamp: datetime
    stream: Literal["stdout", "stderr", "system"] | str = Field(
        description="`stdout`, `stderr`, or `system` (messages from the platform)"
    )
    line: str


class JobLogsResponse(BaseModel):
    logs: list[JobLogLine]


class MetricPointOut(BaseModel):
    id: int = Field(description="Monotonic per platform; pass as `after_id` to page")
    name: str
    step: int | None = None
    value: float
    timestamp: datetime


class MetricHistoryResponse(BaseModel):
    metrics: list[MetricPointOut]
    has_more: bool
    next_after_id: int | None = Field(None, description="Pass as `after_id` for the next page")


class CodePackage(BaseModel):
    id: str = Field(description="`sha256:` + the archive's SHA-256: name it in a job's `source`")
    sha256: str
    size_bytes: int
    file_count: int
    unpacked_bytes: int
    created_at: datetime


class StreamStatus(BaseModel):
    type: Literal["status"] = "status"
    status: JobStatus
    reason: str | None = None
    pending_reason: str | None = None
    queue_position: int | None = None
    attempt: int | None = None


class StreamLog(BaseModel):
    type: Literal["log"] = "log"
    id: int
    timestamp: datetime
    stream: str
    line: str


class StreamMetric(BaseModel):
    type: Literal["metric"] = "metric"
    id: int
    name: str
    step: int | None = None
    value: float
    timestamp: datetime


class StreamEnd(BaseModel):
    type: Literal["end"] = "end"
    status: JobStatus
    error_message: str | None = None
