"""Wire models of the job runtime: logs, metric series, code packages, stream messages."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ml_platform.core.jobs import JobStatus

__all__ = [
    "WEBSOCKET_MESSAGES",
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "timestamp": "2026-06-01T12:00:00Z",
                    "stream": "stdout",
                    "line": "epoch 1",
                }
            ]
        }
    )


class JobLogsResponse(BaseModel):
    """The last lines of a job's log, oldest first."""

    logs: list[JobLogLine]


class MetricPointOut(BaseModel):
    """One recorded metric value of a job (`step` is the training step, if the job gave one)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "name": "loss",
                    "step": 100,
                    "value": 0.25,
                    "timestamp": "2026-06-01T12:00:00Z",
                }
            ]
        }
    )

    id: int = Field(description="Monotonic per platform; pass as `after_id` to page")
    name: str
    step: int | None = None
    value: float
    timestamp: datetime


class MetricHistoryResponse(BaseModel):
    """A page of a job's metric history, oldest first; follow `next_after_id` for more."""

    metrics: list[MetricPointOut]
    has_more: bool
    next_after_id: int | None = Field(None, description="Pass as `after_id` for the next page")


class CodePackage(BaseModel):
    """An uploaded training-code archive, addressed by its content hash."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "sha256:" + "ab" * 32,
                    "sha256": "ab" * 32,
                    "size_bytes": 2048,
                    "file_count": 3,
                    "unpacked_bytes": 6144,
                    "created_at": "2026-06-01T12:00:00Z",
                }
            ]
        }
    )

    id: str = Field(description="`sha256:` + the archive's SHA-256: name it in a job's `source`")
    sha256: str
    size_bytes: int
    file_count: int
    unpacked_bytes: int
    created_at: datetime


class StreamStatus(BaseModel):
    """WebSocket message: the job's status changed (sent first, then on every change)."""

    type: Literal["status"] = "status"
    status: JobStatus
    reason: str | None = None
    pending_reason: str | None = None
    queue_position: int | None = None
    attempt: int | None = None


class StreamLog(BaseModel):
    """WebSocket message: one log line (`id` as in `JobLogLine`)."""

    type: Literal["log"] = "log"
    id: int
    timestamp: datetime
    stream: str
    line: str


class StreamMetric(BaseModel):
    """WebSocket message: one recorded metric value (as in `MetricPointOut`)."""

    type: Literal["metric"] = "metric"
    id: int
    name: str
    step: int | None = None
    value: float
    timestamp: datetime


class StreamEnd(BaseModel):
    """WebSocket message: the job reached a final status; the server then closes (1000)."""

    type: Literal["end"] = "end"
    status: JobStatus
    error_message: str | None = None


WEBSOCKET_MESSAGES: tuple[type[BaseModel], ...] = (StreamStatus, StreamLog, StreamMetric, StreamEnd)
"""The typed messages of ``/v1/jobs/training/{id}/stream``, told apart by ``type``."""
