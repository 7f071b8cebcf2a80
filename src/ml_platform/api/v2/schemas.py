"""The v2 representations: v1's resources plus ``links``, and cursor pages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ml_platform.schemas.jobs import TrainingJob

_EXAMPLE_ID = "job_01jdx3m8c5r7v2k9w4q6y8z0ab"


def _job_example() -> dict[str, Any]:
    extra = TrainingJob.model_config.get("json_schema_extra")
    example = extra.get("example") if isinstance(extra, dict) else None
    return dict(example) if isinstance(example, dict) else {}


_LINKS = {
    "self": f"/v2/jobs/training/{_EXAMPLE_ID}",
    "logs": f"/v1/jobs/training/{_EXAMPLE_ID}/logs",
    "metrics": f"/v1/jobs/training/{_EXAMPLE_ID}/metrics",
    "metrics_history": f"/v1/jobs/training/{_EXAMPLE_ID}/metrics/history",
}

_V2_EXAMPLE: dict[str, Any] = {**_job_example(), "links": _LINKS}


class TrainingJobLinks(BaseModel):
    """Where the job's related resources live."""

    self: str = Field(description="This job", examples=["/v2/jobs/training/job_abc"])
    logs: str = Field(description="Its logs (SSE with `follow=true`)")
    metrics: str = Field(description="Its latest metrics")
    metrics_history: str = Field(description="Every metric point it reported")


class TrainingJobV2(TrainingJob):
    """A training job as v2 returns it: v1's fields plus `links`. From API-Date 2026-12-01,
    list items omit `status_history` unless `?include=status_history`."""

    model_config = ConfigDict(json_schema_extra={"example": _V2_EXAMPLE})

    links: TrainingJobLinks = Field(json_schema_extra={"readOnly": True})

    @classmethod
    def of(cls, job: TrainingJob) -> TrainingJobV2:
        base = f"/v1/jobs/training/{job.id}"
        links = TrainingJobLinks(
            self=f"/v2/jobs/training/{job.id}",
            logs=f"{base}/logs",
            metrics=f"{base}/metrics",
            metrics_history=f"{base}/metrics/history",
        )
        return cls(**dict(job), links=links)


class TrainingJobPage(BaseModel):
    """One page of jobs, newest first; pass `next_page_token` back as `page_token`."""

    jobs: list[TrainingJobV2]
    next_page_token: str | None = Field(description="The next page's token; null on the last page")
