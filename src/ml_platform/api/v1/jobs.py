"""v1 training jobs: exactly the seed's routes and shapes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from ml_platform.api.deps import ContextDep, JsonBody, PrincipalDep
from ml_platform.api.responses import AUTHED, problems
from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.core.jobs import JobStatus
from ml_platform.schemas._types import SafeStr, unsafe_character
from ml_platform.schemas.jobs import FrameworkType, JobListResponse, TrainingJob, TrainingJobSpec

router = APIRouter(prefix="/v1/jobs/training", tags=["Training jobs"])

JobId = Annotated[
    SafeStr, Path(min_length=1, max_length=64, description="A training job id (`job_...`)")
]
"""A job id in a path: bounded, and no NUL or control characters (422 naming the field)."""

TAGS_HELP = "Filter by tags: `key1=value1,key2=value2` (a job must carry all of them)"


def parse_tag_filter(raw: str | None) -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    problem = unsafe_character(raw)
    if problem is not None:
        raise InvalidArgument(
            f"invalid tags filter: it contains {problem}",
            [FieldViolation("query.tags", f"must not contain {problem}")],
        )
    tags: dict[str, str] = {}
    for pair in raw.split(","):
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or "=" in value:
            raise InvalidArgument(
                "invalid tags filter: expected key1=value1,key2=value2",
                [FieldViolation("query.tags", f"{pair[:64]!r} is not key=value")],
            )
        if key in tags and tags[key] != value:
            raise InvalidArgument(
                f"invalid tags filter: tag {key[:64]!r} given twice",
                [FieldViolation("query.tags", f"duplicate key {key[:64]!r}")],
            )
        tags[key] = value
    return tags


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    name="create_training_job",
    summary="Submit a training job",
    response_model=TrainingJob,
    dependencies=[JsonBody],
    responses={
        **problems(400, 403, 413, 415, 422, *AUTHED),
        201: {
            "description": "The job, queued as `pending`",
            "links": {
                "GetTrainingJob": {
                    "operationId": "get_training_job",
                    "parameters": {"job_id": "$response.body#/id"},
                },
                "CancelTrainingJob": {
                    "operationId": "cancel_training_job",
                    "parameters": {"job_id": "$response.body#/id"},
                },
            },
        },
    },
)
async def create_training_job(
    spec: TrainingJobSpec, context: ContextDep, principal: PrincipalDep, response: Response
) -> TrainingJob:
    """Queue a training job. It starts when capacity and the tenant's quota allow.

    Errors that stop the job from starting are answered here (4xx); errors while it runs
    are recorded on the job. `env_vars` is write-only: it is never returned.
    """
    job = await run_in_threadpool(context.jobs.submit, principal, spec)
    response.headers["Location"] = f"/v1/jobs/training/{job.id}"
    return job


@router.get(
    "/{job_id}",
    name="get_training_job",
    summary="Get a training job",
    response_model=TrainingJob,
    responses=problems(404, *AUTHED),
)
async def get_training_job(
    job_id: JobId, context: ContextDep, principal: PrincipalDep
) -> TrainingJob:
    """Get one training job of your tenant."""
    return await run_in_threadpool(context.jobs.get, principal, job_id)


@router.get(
    "",
    name="list_training_jobs",
    summary="List training jobs",
    response_model=JobListResponse,
    responses=problems(422, *AUTHED),
)
async def list_training_jobs(
    context: ContextDep,
    principal: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Filter by status")] = None,
    framework: Annotated[FrameworkType | None, Query(description="Filter by ML framework")] = None,
    tags: Annotated[SafeStr | None, Query(description=TAGS_HELP, max_length=2048)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=500, description="Results per page")] = 50,
) -> JobListResponse:
    """Your tenant's jobs, newest first (`created_at desc, id desc`), filtered and paginated."""
    tag_filter = parse_tag_filter(tags)
    return await run_in_threadpool(
        lambda: context.jobs.search(
            principal,
            status=status,
            framework=framework.value if framework else None,
            tags=tag_filter,
            page=page,
            page_size=page_size,
        )
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    name="cancel_training_job",
    summary="Cancel a training job",
    response_class=Response,
    responses=problems(404, 409, *AUTHED),
)
async def cancel_training_job(
    job_id: JobId, context: ContextDep, principal: PrincipalDep
) -> Response:
    """Cancel a pending or running job; its status becomes `cancelled`. A finished job: 409."""
    await run_in_threadpool(context.jobs.cancel, principal, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
