"""Deployments: serve a registered model version under a name (REST control plane); v1 and
v2, built by one ``deployments_router``.

v2 differs only where a v2 exists for: a deployment carries ``links`` (its model and the model
version it serves), lists page with signed cursors (``page_token``), and ``API-Date`` is
checked and echoed (see ``api.versioning``).
"""

from __future__ import annotations

from typing import Annotated, Any

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
from ml_platform.api.v2.schemas import DeploymentPage, DeploymentV2
from ml_platform.api.versioning import (
    API_DATE_RESPONSE_HEADER,
    LINK_NEXT_HEADER,
    ApiVersion,
    resolve_api_date,
)
from ml_platform.core.errors import Unavailable
from ml_platform.deployments.service import DeploymentService
from ml_platform.schemas.deployments import (
    DEPLOYMENT_NAME_PATTERN,
    Deployment,
    DeploymentCreate,
    DeploymentListResponse,
    DeploymentUpdate,
)

DeploymentName = Annotated[
    str,
    Path(
        min_length=1, max_length=63, pattern=DEPLOYMENT_NAME_PATTERN, description="Deployment name"
    ),
]
ModelFilter = Annotated[
    str | None,
    Query(max_length=63, pattern=DEPLOYMENT_NAME_PATTERN, description="Only this model's"),
]


def _service(context: ContextDep) -> DeploymentService:
    if context.deployments is None:
        raise Unavailable("deployments are not enabled on this server")
    return context.deployments


def deployments_router(version: ApiVersion) -> APIRouter:
    """The deployment routes of ``version``: one body of route code for v1 and v2."""
    v2 = version == "v2"
    prefix = f"/{version}/deployments"
    suffix = "_v2" if v2 else ""
    deployment_out: type[Deployment] = DeploymentV2 if v2 else Deployment
    bad = (400,) if v2 else ()  # v2: an unknown API-Date -> 400
    dated: dict[str, Any] = API_DATE_RESPONSE_HEADER if v2 else {}
    router = APIRouter(
        prefix=prefix,
        tags=["Deployments"],
        dependencies=[Depends(resolve_api_date)] if v2 else [],
    )

    def shaped(deployment: Deployment) -> Deployment:
        return DeploymentV2.of(deployment) if v2 else deployment

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        name=f"create_deployment{suffix}",
        summary="Deploy a model version",
        response_model=deployment_out,
        dependencies=[JsonBody],
        responses={
            **problems(400, 409, 413, 415, 422, *AUTHED),
            **rejected_when(
                422, "`model` names no model of your tenant, or `version` / `alias` none of its"
            ),
            201: {
                "description": "The deployment, `pending` until the serving plane has loaded it",
                **({"headers": {**ETAG_HEADER, **dated}} if v2 else {}),
                "links": {
                    "GetDeployment": {
                        "operationId": f"get_deployment{suffix}",
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
        """  # noqa: E501 (v1's description, unchanged)
        service = _service(context)
        created = shaped(await run_in_threadpool(service.create, principal, body))
        response.headers["Location"] = f"{prefix}/{created.name}"
        response.headers["ETag"] = etag_of(created)
        return created

    if v2:

        @router.get(
            "",
            name="list_deployments_v2",
            summary="List deployments",
            response_model=DeploymentPage,
            responses={
                **problems(400, 422, *AUTHED),
                200: {
                    "description": "One page, newest first",
                    "headers": {**LINK_NEXT_HEADER, **dated},
                },
            },
        )
        async def list_deployments_v2(
            request: Request,
            context: ContextDep,
            principal: PrincipalDep,
            model: ModelFilter = None,
            page_size: Annotated[int, Query(ge=1, le=500, description="Results per page")] = 50,
            page_token: PageTokenQuery = None,
        ) -> Response:
            """Your tenant's deployments, newest first (`created_at desc, id desc`), paged by
            cursor: no deployment is repeated or skipped while deployments are created."""
            service = _service(context)
            query = {"list": "deployments", "tenant": principal.tenant_id, "model": model}
            deployments, token = await page_by_time(
                page_tokens(context),
                query,
                page_token,
                page_size,
                lambda after, limit: service.search_after(
                    principal, model=model, after=after, limit=limit
                ),
            )
            items = [DeploymentV2.of(d).model_dump(mode="json") for d in deployments]
            return page_response(request, "deployments", items, token)

    else:

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
            model: ModelFilter = None,
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
        name=f"get_deployment{suffix}",
        summary="Get a deployment",
        response_model=deployment_out,
        responses={
            **problems(*bad, 404, *AUTHED),
            200: {"description": "The deployment", "headers": {**ETAG_HEADER, **dated}},
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
        found = shaped(await run_in_threadpool(_service(context).get, principal, name))
        return cached(response, found, if_none_match) or found

    @router.patch(
        "/{name}",
        name=f"update_deployment{suffix}",
        summary="Roll a deployment to another version",
        response_model=deployment_out,
        dependencies=[JsonBody],
        responses={
            **problems(*bad, 404, 412, 413, 415, 422, *AUTHED),
            200: {"description": "The deployment, rolling", "headers": {**ETAG_HEADER, **dated}},
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
            current = shaped(await run_in_threadpool(service.get, principal, name))
            require_current(if_match, current, f"deployment {name!r}")
        updated = shaped(await run_in_threadpool(service.update, principal, name, body))
        response.headers["ETag"] = etag_of(updated)
        return updated

    @router.delete(
        "/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        name=f"delete_deployment{suffix}",
        summary="Delete a deployment",
        response_class=Response,
        responses=problems(*bad, 404, 412, *AUTHED),
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
            current = shaped(await run_in_threadpool(service.get, principal, name))
            require_current(if_match, current, f"deployment {name!r}")
        await run_in_threadpool(service.delete, principal, name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


router = deployments_router("v1")
