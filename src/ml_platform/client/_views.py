"""Read-only views shared by the sync and async job and deployment handles (no I/O here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ml_platform.client._models import TERMINAL_JOB_STATUSES, DeploymentData, JobData

__all__ = ["DeploymentView", "JobView", "log_text"]

POLL_FLOOR_SECONDS = 0.05


def log_text(lines: list[Any]) -> str:
    return "\n".join(str(getattr(line, "line", line)) for line in lines)


class JobView:
    """The seed's ``TrainingJob`` properties over the last job document fetched."""

    _data: JobData

    @property
    def data(self) -> JobData:
        return self._data

    @property
    def id(self) -> str:
        return self._data.id

    @property
    def status(self) -> str:
        return self._data.status

    @property
    def name(self) -> str:
        return self._data.spec.name

    @property
    def framework(self) -> str:
        return self._data.spec.framework

    @property
    def created_at(self) -> datetime | None:
        return self._data.created_at

    @property
    def started_at(self) -> datetime | None:
        return self._data.started_at

    @property
    def completed_at(self) -> datetime | None:
        return self._data.completed_at

    @property
    def output_path(self) -> str | None:
        """Where the model went; None until the job succeeded (as in the seed)."""
        return self._data.spec.output_path if self._data.status == "succeeded" else None

    @property
    def error_message(self) -> str | None:
        return self._data.error_message

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self._data.metrics)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self._data.spec.hyperparameters)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._data.spec.tags)

    @property
    def pending_reason(self) -> str | None:
        return self._data.pending_reason

    @property
    def is_finished(self) -> bool:
        return self._data.status in TERMINAL_JOB_STATUSES

    @property
    def request_id(self) -> str | None:
        return self._data.request_id

    @property
    def raw(self) -> dict[str, Any]:
        return self._data.raw

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class DeploymentView:
    _data: DeploymentData

    @property
    def data(self) -> DeploymentData:
        return self._data

    @property
    def id(self) -> str:
        return self._data.id

    @property
    def name(self) -> str:
        return self._data.name

    @property
    def model(self) -> str:
        return self._data.model

    @property
    def version(self) -> int | None:
        return self._data.version

    @property
    def alias(self) -> str | None:
        return self._data.alias

    @property
    def status(self) -> str:
        return self._data.status

    @property
    def status_message(self) -> str:
        return self._data.status_message

    @property
    def target_version(self) -> int | None:
        return self._data.target_version

    @property
    def serving_version(self) -> int | None:
        return self._data.serving_version

    @property
    def is_ready(self) -> bool:
        data = self._data
        return data.status == "ready" and (
            data.target_version is None or data.serving_version == data.target_version
        )

    @property
    def request_id(self) -> str | None:
        return self._data.request_id

    @property
    def raw(self) -> dict[str, Any]:
        return self._data.raw

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, model={self.model!r}, "
            f"status={self.status!r}, serving_version={self.serving_version!r})"
        )
