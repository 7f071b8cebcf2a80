"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ml_platform.api.deps import ContextDep
from ml_platform.core.errors import Unavailable

router = APIRouter(tags=["Health"])


class HealthStatus(BaseModel):
    """A probe's answer: `ok` when the server (and, for readiness, its store) answers."""

    status: str


@router.get("/healthz", name="get_liveness", summary="Liveness probe", response_model=HealthStatus)
async def healthz() -> HealthStatus:
    """The process is up and serving HTTP."""
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    name="get_readiness",
    summary="Readiness probe",
    response_model=HealthStatus,
    responses={503: {"description": "The database is unreachable"}},
)
async def readyz(context: ContextDep) -> HealthStatus:
    """Ready when the database answers."""
    try:
        await run_in_threadpool(context.db.ping)
    except Exception as exc:
        raise Unavailable("database unreachable") from exc
    return HealthStatus(status="ready")
