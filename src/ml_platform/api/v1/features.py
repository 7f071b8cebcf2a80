"""v1 features: entities, feature views, materialization, push, online and historical reads."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, BackgroundTasks, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from ml_platform.api.audit import audited_as_read
from ml_platform.api.deps import ContextDep, JsonBody, PrincipalDep
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.core.errors import Unavailable
from ml_platform.features.service import FeatureService
from ml_platform.schemas.features import (
    NAME_PATTERN,
    Entity,
    EntityCreate,
    EntityListResponse,
    FeatureView,
    FeatureViewCreate,
    FeatureViewListResponse,
    FeatureViewUpdate,
    HistoricalFeaturesRequest,
    HistoricalFeaturesResponse,
    MaterializationList,
    MaterializationRun,
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    PushRequest,
    PushResponse,
)

router = APIRouter(prefix="/v1/features", tags=["Features"])

_NAME = {"min_length": 1, "max_length": 63, "pattern": NAME_PATTERN}
EntityName = Annotated[str, Path(description="Entity name", **_NAME)]
ViewName = Annotated[str, Path(description="Feature view name", **_NAME)]
RunId = Annotated[
    str, Path(min_length=1, max_length=40, pattern=r"^mat_[0-9a-z]+$", description="Run id")
]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def _service(context: ContextDep) -> FeatureService:
    if context.features is None:
        raise Unavailable("the feature store is not enabled on this server")
    return context.features


# -- entities ----------------------------------------------------------------------------------


@router.post(
    "/entities",
    status_code=status.HTTP_201_CREATED,
    name="create_entity",
    summary="Create an entity",
    response_model=Entity,
    dependencies=[JsonBody],
    responses={
        **problems(400, 409, 413, 415, 422, *AUTHED),
        201: {
            "description": "The entity",
            "links": {
                "GetEntity": {
                    "operationId": "get_entity",
                    "parameters": {"name": "$response.body#/name"},
                }
            },
        },
    },
)
async def create_entity(
    body: EntityCreate, context: ContextDep, principal: PrincipalDep, response: Response
) -> Entity:
    """What feature values are about, and the typed join keys that identify one of them."""
    created = await run_in_threadpool(_service(context).create_entity, principal, body)
    response.headers["Location"] = f"/v1/features/entities/{created.name}"
    return created


@router.get(
    "/entities",
    name="list_entities",
    summary="List entities",
    response_model=EntityListResponse,
    responses=problems(422, *AUTHED),
)
async def list_entities(
    context: ContextDep, principal: PrincipalDep, page: Page = 1, page_size: PageSize = 50
) -> EntityListResponse:
    """Your tenant's entities, newest first."""
    return await run_in_threadpool(_service(context).list_entities, principal, page, page_size)


@router.get(
    "/entities/{name}",
    name="get_entity",
    summary="Get an entity",
    response_model=Entity,
    responses=problems(404, 422, *AUTHED),
)
async def get_entity(name: EntityName, context: ContextDep, principal: PrincipalDep) -> Entity:
    """One entity."""
    return await run_in_threadpool(_service(context).get_entity, principal, name)


@router.delete(
    "/entities/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    name="delete_entity",
    summary="Delete an entity",
    response_class=Response,
    responses=problems(404, 409, 422, *AUTHED),
)
async def delete_entity(name: EntityName, context: ContextDep, principal: PrincipalDep) -> Response:
    """Delete an entity no feature view uses (409 names the views that do)."""
    await run_in_threadpool(_service(context).delete_entity, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- feature views -----------------------------------------------------------------------------

VIEW_RULES = (
    "the definition does not match its source file (a join key, the timestamp field or a "
    "feature missing from the file or of another type) or a feature repeats a join key or "
    "the timestamp field"
)


@router.post(
    "/views",
    status_code=status.HTTP_201_CREATED,
    name="create_feature_view",
    summary="Create a feature view",
    response_model=FeatureView,
    dependencies=[JsonBody],
    responses={
        **problems(400, 404, 409, 413, 415, 422, *AUTHED),
        **rejected_when(422, VIEW_RULES),
        201: {
            "description": "Version 1 of the view",
            "links": {
                "GetFeatureView": {
                    "operationId": "get_feature_view",
                    "parameters": {"name": "$response.body#/name"},
                }
            },
        },
    },
)
async def create_feature_view(
    body: FeatureViewCreate, context: ContextDep, principal: PrincipalDep, response: Response
) -> FeatureView:
    """Typed features of an entity, read from a CSV or Parquet file of your data area.

    The file is read now: a missing file is 404, and a join key, feature or timestamp column
    the file lacks (or holds values of another type) is 422 naming the field and the column.
    """
    created = await run_in_threadpool(_service(context).create_view, principal, body)
    response.headers["Location"] = f"/v1/features/views/{created.name}"
    return created


@router.get(
    "/views",
    name="list_feature_views",
    summary="List feature views",
    response_model=FeatureViewListResponse,
    responses=problems(422, *AUTHED),
)
async def list_feature_views(
    context: ContextDep, principal: PrincipalDep, page: Page = 1, page_size: PageSize = 50
) -> FeatureViewListResponse:
    """Your tenant's feature views (their current versions), newest first."""
    return await run_in_threadpool(_service(context).list_views, principal, page, page_size)


@router.get(
    "/views/{name}",
    name="get_feature_view",
    summary="Get a feature view",
    response_model=FeatureView,
    responses=problems(404, 422, *AUTHED),
)
async def get_feature_view(
    name: ViewName,
    context: ContextDep,
    principal: PrincipalDep,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="A past version (default: current)")
    ] = None,
) -> FeatureView:
    """The current definition, or a past `version`."""
    return await run_in_threadpool(_service(context).get_view, principal, name, version)


@router.put(
    "/views/{name}",
    name="update_feature_view",
    summary="Add a version of a feature view",
    response_model=FeatureView,
    dependencies=[JsonBody],
    responses={**problems(400, 404, 409, 413, 415, 422, *AUTHED), **rejected_when(422, VIEW_RULES)},
)
async def update_feature_view(
    name: ViewName, body: FeatureViewUpdate, context: ContextDep, principal: PrincipalDep
) -> FeatureView:
    """A new version, checked against its source like a new view. Online values stay; the
    next materialization loads rows after the last watermark with the new definition."""
    return await run_in_threadpool(_service(context).update_view, principal, name, body)


@router.delete(
    "/views/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    name="delete_feature_view",
    summary="Delete a feature view",
    response_class=Response,
    responses=problems(404, 422, *AUTHED),
)
async def delete_feature_view(
    name: ViewName, context: ContextDep, principal: PrincipalDep
) -> Response:
    """Every version, its materialization history and its online values."""
    await run_in_threadpool(_service(context).delete_view, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- materialization and push ------------------------------------------------------------------


@router.post(
    "/views/{name}/materializations",
    status_code=status.HTTP_202_ACCEPTED,
    name="materialize_feature_view",
    summary="Materialize a feature view",
    response_model=MaterializationRun,
    responses={
        **problems(404, 422, *AUTHED),
        202: {
            "description": "The run, `running`; poll it until `succeeded` or `failed`",
            "links": {
                "GetMaterialization": {
                    "operationId": "get_materialization",
                    "parameters": {
                        "name": "$request.path.name",
                        "run_id": "$response.body#/id",
                    },
                }
            },
        },
    },
)
async def materialize_feature_view(
    name: ViewName,
    context: ContextDep,
    principal: PrincipalDep,
    response: Response,
    background: BackgroundTasks,
) -> MaterializationRun:
    """Load the latest value of every entity key from the source rows newer than the last
    succeeded run's watermark into the online store. Answers at once with the run."""
    service = _service(context)
    run = await run_in_threadpool(service.start_materialization, principal, name)
    background.add_task(
        run_in_threadpool, service.run_materialization, principal.tenant_id, run.id, name
    )
    response.headers["Location"] = f"/v1/features/views/{name}/materializations/{run.id}"
    return run


@router.get(
    "/views/{name}/materializations",
    name="list_materializations",
    summary="List a feature view's materializations",
    response_model=MaterializationList,
    responses=problems(404, 422, *AUTHED),
)
async def list_materializations(
    name: ViewName,
    context: ContextDep,
    principal: PrincipalDep,
    page: Page = 1,
    page_size: PageSize = 50,
) -> MaterializationList:
    """The view's runs, newest first, with counts, watermarks and errors."""
    return await run_in_threadpool(
        _service(context).list_materializations, principal, name, page, page_size
    )


@router.get(
    "/views/{name}/materializations/{run_id}",
    name="get_materialization",
    summary="Get a materialization",
    response_model=MaterializationRun,
    responses=problems(404, 422, *AUTHED),
)
async def get_materialization(
    name: ViewName, run_id: RunId, context: ContextDep, principal: PrincipalDep
) -> MaterializationRun:
    """One run: `running`, `succeeded` or `failed` (with `error`)."""
    return await run_in_threadpool(_service(context).get_materialization, principal, name, run_id)


@router.post(
    "/views/{name}/push",
    name="push_features",
    summary="Push feature rows",
    response_model=PushResponse,
    dependencies=[JsonBody],
    responses=problems(400, 404, 413, 415, 422, *AUTHED),
)
async def push_features(
    name: ViewName, body: PushRequest, context: ContextDep, principal: PrincipalDep
) -> PushResponse:
    """Write rows straight to the online store; the next lookup sees them. Each row replaces
    its entity key's stored row unless that one is newer (features a row leaves out become
    `MISSING`)."""
    return await run_in_threadpool(_service(context).push, principal, name, body)


# -- reads -------------------------------------------------------------------------------------


@router.post(
    "/online",
    name="get_online_features",
    summary="Get online features",
    response_model=OnlineFeaturesResponse,
    dependencies=[JsonBody],
    responses=problems(400, 404, 413, 415, 422, *AUTHED),
)
@audited_as_read
async def get_online_features(
    body: OnlineFeaturesRequest, context: ContextDep, principal: PrincipalDep
) -> Response:
    """The latest values for each entity row (as gRPC `FeatureServing.GetOnlineFeatures`):
    `PRESENT`, `MISSING` (no value) or `OUTSIDE_TTL` (older than the view's TTL; not served)."""
    rows = body.entity_rows
    # on the event loop: cached definitions and an asyncio Redis read take no thread hop
    found = await _service(context).online.lookup_async(principal.tenant_id, body.features, rows)
    # the documented OnlineFeaturesResponse, written straight to JSON: the values are already
    # checked (stored typed, the rows validated), so no model is built per value
    results = [
        {
            "entity": row,
            "values": [
                {
                    "feature": v.ref,
                    "value": v.value,
                    "status": v.status.value,
                    "event_timestamp": v.event_ts,
                }
                for v in values
            ],
        }
        for row, values in zip(rows, found, strict=True)
    ]
    content = orjson.dumps({"results": results}, option=orjson.OPT_UTC_Z)
    return Response(content, media_type="application/json")


@router.post(
    "/historical",
    name="get_historical_features",
    summary="Get point-in-time training data",
    response_model=HistoricalFeaturesResponse,
    dependencies=[JsonBody],
    responses=problems(400, 404, 413, 415, 422, *AUTHED),
)
@audited_as_read
async def get_historical_features(
    body: HistoricalFeaturesRequest, context: ContextDep, principal: PrincipalDep
) -> HistoricalFeaturesResponse:
    """Each entity row plus, per feature, the newest source value of its entity key at or
    before the row's `timestamp_field` and within the view's TTL (null otherwise)."""
    return await run_in_threadpool(_service(context).historical_features, principal, body)
