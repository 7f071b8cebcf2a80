"""Training jobs: v1 (the seed's routes and shapes) and v2, built by one ``jobs_router``.

v2 differs only where a v2 exists for: the job carries ``links``, lists page with signed
cursors (``page_token``), and dated behaviour follows ``API-Date`` (see ``api.versioning``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ml_platform.api.deps import ContextDep, JsonBody, PrincipalDep
from ml_platform.api.etags import (
    ETAG_HEADER,
    NOT_MODIFIED,
    IfMatchCurrent,
    IfNoneMatch,
    cached,
    etag_of,
    require_current,
)
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.api.v2.pages import PageTokenQuery, page_by_time, page_response, page_tokens
from ml_platform.api.v2.schemas import TrainingJobPage, TrainingJobV2
from ml_platform.api.versioning import (
    API_DATE_LEAN_LISTS,
    API_DATE_RESPONSE_HEADER,
    LINK_NEXT_HEADER,
    ApiDateDep,
    ApiVersion,
    at_least,
    resolve_api_date,
)
from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.core.jobs import JobStatus
from ml_platform.schemas._types import MAX_TAGS, TAG_FILTER_PATTERN, SafeStr, unsafe_character
from ml_platform.schemas.jobs import FrameworkType, JobListResponse, TrainingJob, TrainingJobSpec

JobId = Annotated[
    SafeStr, Path(min_length=1, max_length=64, description="A training job id (`job_...`)")
]
"""A job id in a path: bounded, and no NUL or control characters (422 naming the field)."""

TAGS_HELP = (
    "Filter by tags: `key1=value1,key2=value2` (a job must carry all of them); at most "
    f"{MAX_TAGS} tags, as many as a job holds"
)

# The list filters every list route shares (jobs v1 and v2, models).
TagsQuery = Annotated[
    SafeStr | None,
    Query(
        description=TAGS_HELP, max_length=2048, json_schema_extra={"pattern": TAG_FILTER_PATTERN}
    ),
]
FrameworkQuery = Annotated[FrameworkType | None, Query(description="Filter by ML framework")]
StatusQuery = Annotated[JobStatus | None, Query(description="Filter by status")]
PageSizeQuery = Annotated[int, Query(ge=1, le=500, description="Results per page")]


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
    if len(tags) > MAX_TAGS:  # nothing holds more; a join per tag would pass SQLite's limit
        raise InvalidArgument(
            f"invalid tags filter: at most {MAX_TAGS} tags (a job or model holds no more)",
            [FieldViolation("query.tags", f"{len(tags)} tags given, at most {MAX_TAGS}")],
        )
    return tags


def jobs_router(version: ApiVersion) -> APIRouter:
    """The training-job routes of ``version``: one body of route code for v1 and v2."""
    v2 = version == "v2"
    prefix = f"/{version}/jobs/training"
    suffix = "_v2" if v2 else ""
    job_model: type[TrainingJob] = TrainingJobV2 if v2 else TrainingJob
    version_headers: dict[str, Any] = API_DATE_RESPONSE_HEADER if v2 else {}
    router = APIRouter(
        prefix=prefix,
        tags=["Training"],
        dependencies=[Depends(resolve_api_date)] if v2 else [],
    )

    def shaped(job: TrainingJob) -> TrainingJob:
        return TrainingJobV2.of(job) if v2 else job

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        name=f"create_training_job{suffix}",
        summary="Submit a training job",
        response_model=job_model,
        dependencies=[JsonBody],
        responses={
            **problems(400, 403, 413, 415, 422, *AUTHED),
            **rejected_when(
                422,
                "`source` names a code package your tenant does not have, or `data_path` / "
                "`output_path` is outside your tenant's areas",
            ),
            201: {
                "description": "The job, queued as `pending`",
                "headers": {**ETAG_HEADER, **version_headers},
                "links": {
                    "GetTrainingJob": {
                        "operationId": f"get_training_job{suffix}",
                        "parameters": {"job_id": "$response.body#/id"},
                    },
                    "CancelTrainingJob": {
                        "operationId": f"cancel_training_job{suffix}",
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
        job = shaped(await run_in_threadpool(context.jobs.submit, principal, spec))
        response.headers["Location"] = f"{prefix}/{job.id}"
        response.headers["ETag"] = etag_of(job)
        return job

    @router.get(
        "/{job_id}",
        name=f"get_training_job{suffix}",
        summary="Get a training job",
        response_model=job_model,
        responses={
            **problems(*((400,) if v2 else ()), 404, *AUTHED),
            200: {"description": "The job", "headers": {**ETAG_HEADER, **version_headers}},
            **NOT_MODIFIED,
        },
    )
    async def get_training_job(
        job_id: JobId,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
        if_none_match: IfNoneMatch = None,
    ) -> Any:
        """Get one training job of your tenant. Honours `If-None-Match` (304)."""
        job = shaped(await run_in_threadpool(context.jobs.get, principal, job_id))
        return cached(response, job, if_none_match) or job

    if v2:

        @router.get(
            "",
            name="list_training_jobs_v2",
            summary="List training jobs",
            response_model=TrainingJobPage,
            responses={
                **problems(400, 422, *AUTHED),
                200: {
                    "description": "One page, newest first",
                    "headers": {**LINK_NEXT_HEADER, **version_headers},
                },
            },
        )
        async def list_training_jobs_v2(
            request: Request,
            context: ContextDep,
            principal: PrincipalDep,
            api_date: ApiDateDep,
            status: StatusQuery = None,
            framework: FrameworkQuery = None,
            tags: TagsQuery = None,
            page_size: PageSizeQuery = 50,
            page_token: PageTokenQuery = None,
            include: Annotated[
                Literal["status_history"] | None,
                Query(
                    description="From API-Date 2026-12-01: `status_history` to keep it on "
                    "list items"
                ),
            ] = None,
        ) -> Response:
            """Your tenant's jobs, newest first (`created_at desc, id desc`), filtered and
            paged by cursor: no job is repeated or skipped while jobs are created."""
            tag_filter = parse_tag_filter(tags)
            query = {
                "tenant": principal.tenant_id,
                "status": status.value if status else None,
                "framework": framework.value if framework else None,
                "tags": sorted(tag_filter.items()),
            }
            jobs, token = await page_by_time(
                page_tokens(context),
                query,
                page_token,
                page_size,
                lambda after, limit: context.jobs.search_after(
                    principal,
                    status=status,
                    framework=framework.value if framework else None,
                    tags=tag_filter,
                    after=after,
                    limit=limit,
                ),
            )
            lean = at_least(api_date, API_DATE_LEAN_LISTS) and include != "status_history"
            exclude = {"status_history"} if lean else None
            items = [TrainingJobV2.of(job).model_dump(mode="json", exclude=exclude) for job in jobs]
            return page_response(request, "jobs", items, token)

    else:

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
            status: StatusQuery = None,
            framework: FrameworkQuery = None,
            tags: TagsQuery = None,
            page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number")] = 1,
            page_size: PageSizeQuery = 50,
        ) -> JobListResponse:
            """Your tenant's jobs, newest first (`created_at desc, id desc`), filtered and
            paginated."""
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
        name=f"cancel_training_job{suffix}",
        summary="Cancel a training job",
        response_class=Response,
        responses=problems(*((400,) if v2 else ()), 404, 409, 412, *AUTHED),
    )
    async def cancel_training_job(
        job_id: JobId,
        context: ContextDep,
        principal: PrincipalDep,
        if_match: IfMatchCurrent = None,
    ) -> Response:
        """Cancel a pending or running job; its status becomes `cancelled`. A finished job:
        409. With `If-Match`, only if the job is unchanged since that ETag (else 412)."""
        if if_match is not None:
            current = shaped(await run_in_threadpool(context.jobs.get, principal, job_id))
            require_current(if_match, current, f"training job {job_id!r}")
        await run_in_threadpool(context.jobs.cancel, principal, job_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


router = jobs_router("v1")
