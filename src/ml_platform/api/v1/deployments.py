"""v1 deployments: serve a registered model version under a name (REST control plane)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
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
from ml_platform.api.responses import AUTHED, problems
from ml_platform.core.errors import Unavailable
from ml_platform.deployments.service import DeploymentService
from ml_platform.schemas.deployments import (
    DEPLOYMENT_NAME_PATTERN,
    Deployment,
    DeploymentCreate,
    DeploymentListResponse,
    DeploymentUpdate,
)

router = APIRouter(prefix="/v1/deployments", tags=["Deployments"])

DeploymentName = Annotated[
    str,
    Path(
        min_length=1, max_length=63, pattern=DEPLOYMENT_NAME_PATTERN, description="Deployment name"
    ),
]


def _service(context: ContextDep) -> DeploymentService:
    if context.deployments is None:
        raise Unavailable("deployments are not enabled on this server")
    return context.deployments


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    name="create_deployment",
    summary="Deploy a model version",
    response_model=Deployment,
    dependencies=[JsonBody],
    responses={
        **problems(400, 409, 413, 415, 422, *AUTHED),
        201: {
            "description": "The deployment, `pending` until the serving plane has loaded it",
            "links": {
                "GetDeployment": {
                    "operationId": "get_deployment",
                    "parameters": {"name": "$response.body#/name"},
                }
            },
        },
    },
)
async def create_deployment(
    body: DeploymentCreate, context: ContextDep, principal: PrincipalDep, response: Response
) -> Deployment:
    """Serve `model` at a fixed `version`, or follow an `alias` (default `latest`) as it moves.

    The serving plane loads and warms the model, then the deployment turns `ready` and answers
    gRPC `ModelServing` / Open Inference Protocol requests with `model_id` = the deployment name.
    """
    service = _service(context)
    created = await run_in_threadpool(service.create, principal, body)
    response.headers["Location"] = f"/v1/deployments/{created.name}"
    response.headers["ETag"] = etag_of(created)
    return created


@router.get(
    "",
    name="list_deployments",
    summary="List deployments",
    response_model=DeploymentListResponse,
    responses=problems(422, *AUTHED),
)
async def list_deployments(
    context: ContextDep,
    principal: PrincipalDep,
    model: Annotated[
        str | None,
        Query(max_length=63, pattern=DEPLOYMENT_NAME_PATTERN, description="Only this model's"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeploymentListResponse:
    """Your tenant's deployments, newest first."""
    service = _service(context)
    return await run_in_threadpool(
        lambda: service.search(principal, model=model, page=page, page_size=page_size)
    )


@router.get(
    "/{name}",
    name="get_deployment",
    summary="Get a deployment",
    response_model=Deployment,
    responses={
        **problems(404, *AUTHED),
        200: {"description": "The deployment", "headers": ETAG_HEADER},
        **NOT_MODIFIED,
    },
)
async def get_deployment(
    name: DeploymentName,
    context: ContextDep,
    principal: PrincipalDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> Any:
    """One deployment with its load status (`pending`, `loading`, `ready`, `failed` + reason).
    Honours `If-None-Match` (304); its ETag changes with the status too."""
    found = await run_in_threadpool(_service(context).get, principal, name)
    return cached(response, found, if_none_match) or found


@router.patch(
    "/{name}",
    name="update_deployment",
    summary="Roll a deployment to another version",
    response_model=Deployment,
    dependencies=[JsonBody],
    responses={
        **problems(404, 412, 413, 415, 422, *AUTHED),
        200: {"description": "The deployment, rolling", "headers": ETAG_HEADER},
    },
)
async def update_deployment(
    name: DeploymentName,
    body: DeploymentUpdate,
    context: ContextDep,
    principal: PrincipalDep,
    response: Response,
    if_match: IfMatchCurrent = None,
) -> Deployment:
    """Move to another `version` or `alias`, or change batching.

    The new version loads and warms up beside the old one; traffic moves only when it is
    ready, so no request fails during the swap. A failed load keeps the old version serving.
    With `If-Match`, only if the deployment is unchanged since that ETag (else 412).
    """
    service = _service(context)
    if if_match is not None:
        current = await run_in_threadpool(service.get, principal, name)
        require_current(if_match, current, f"deployment {name!r}")
    updated = await run_in_threadpool(service.update, principal, name, body)
    response.headers["ETag"] = etag_of(updated)
    return updated


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    name="delete_deployment",
    summary="Delete a deployment",
    response_class=Response,
    responses=problems(404, 412, *AUTHED),
)
async def delete_deployment(
    name: DeploymentName,
    context: ContextDep,
    principal: PrincipalDep,
    if_match: IfMatchCurrent = None,
) -> Response:
    """Stop serving; the model is unloaded from every worker. With `If-Match`, only if the
    deployment is unchanged since that ETag (else 412)."""
    service = _service(context)
    if if_match is not None:
        current = await run_in_threadpool(service.get, principal, name)
        require_current(if_match, current, f"deployment {name!r}")
    await run_in_threadpool(service.delete, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
