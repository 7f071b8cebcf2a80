"""The executor seam: what the scheduler needs from any place that runs job code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ml_platform.core.jobs import JobStatus


@dataclass(frozen=True)
class JobLaunch:
    """Everything an executor needs to start one attempt of a job (paths already checked)."""

    job_id: str
    tenant_id: str
    entrypoint: str
    data_path: str
    output_path: str
    attempt: int = 1
    code_dir: Path | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    docker_image: str | None = None
    cpu_cores: float = 1.0
    memory_gb: float | None = None
    gpu_count: int = 0
    max_runtime_seconds: float | None = None


@dataclass(frozen=True)
class JobOutcome:
    """How an attempt ended. ``status`` is terminal."""

    status: JobStatus
    error_message: str | None = None
    exit_code: int | None = None
    resource_usage: dict[str, float] = field(default_factory=dict)


class Executor(Protocol):
    """Runs jobs. Implementations: ``LocalExecutor``, ``RayExecutor``.

    ``start`` returns a small JSON-able handle that the scheduler persists with the job so a
    restarted server can call ``recover`` with it.
    """

    name: str

    async def start(self, launch: JobLaunch) -> dict[str, Any]:
        """Start an attempt and return at once; problems the job causes end up in ``wait``."""
        ...

    async def wait(self, job_id: str) -> JobOutcome:
        """Wait for the attempt started here (or re-adopted by ``recover``) to end."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Stop the attempt; ``wait`` then returns a ``cancelled`` outcome."""
        ...

    async def recover(self, job_id: str, handle: Mapping[str, Any]) -> JobOutcome | None:
        """After a restart: ``None`` if the attempt was re-adopted (then ``wait`` works), else
        the outcome to record (the attempt is gone or was stopped cleanly)."""
        ...

    async def aclose(self) -> None:
        """Stop watching (running jobs keep running only if the executor can re-adopt them)."""
        ...
