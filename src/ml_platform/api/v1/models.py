"""Model registry: models, versions (job, upload or URI), artifacts and aliases; v1 and v2,
built by one ``models_router``.

v2 differs only where a v2 exists for: each resource carries ``links`` (a version to its model,
artifact and training job), lists page with signed cursors (``page_token``), and ``API-Date``
is checked and echoed (see ``api.versioning``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from ml_platform.api.deps import ContextDep, JsonBody, PrincipalDep
from ml_platform.api.etags import ETAG_HEADER, NOT_MODIFIED, IfNoneMatch, etag_of
from ml_platform.api.etags import cached as _cached
from ml_platform.api.etags import if_match_value as _if_match
from ml_platform.api.etags import matches as _matches
from ml_platform.api.responses import AUTHED, problems, rejected_when
from ml_platform.api.v1.jobs import FrameworkQuery, PageSizeQuery, TagsQuery, parse_tag_filter
from ml_platform.api.v1.model_uploads import read_json_body, stage_multipart
from ml_platform.api.v2.pages import (
    PageTokenQuery,
    page_by_number,
    page_by_time,
    page_response,
    page_tokens,
)
from ml_platform.api.v2.schemas import (
    ModelAliasV2,
    ModelPage,
    ModelV2,
    ModelVersionPage,
    ModelVersionV2,
)
from ml_platform.api.versioning import (
    API_DATE_RESPONSE_HEADER,
    LINK_NEXT_HEADER,
    ApiVersion,
    resolve_api_date,
)
from ml_platform.core.errors import Unavailable, UnsupportedMediaType
from ml_platform.registry.service import RegistryService
from ml_platform.schemas.models import (
    ALIAS_PATTERN,
    ARTIFACT_FORMATS,
    MODEL_NAME_PATTERN,
    Model,
    ModelAlias,
    ModelAliasUpdate,
    ModelCreate,
    ModelListResponse,
    ModelUpdate,
    ModelVersion,
    ModelVersionCreate,
    ModelVersionListResponse,
)

ModelName = Annotated[
    str, Path(min_length=1, max_length=63, pattern=MODEL_NAME_PATTERN, description="Model name")
]
VersionRef = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="A version number, an alias, or `latest`",
    ),
]
VersionNumber = Annotated[
    str,
    Path(
        description="A version number (not an alias)",
        # Checked by the registry (422 with an actionable message); declared here.
        json_schema_extra={"pattern": r"^[0-9]*[1-9][0-9]*$", "minLength": 1, "maxLength": 9},
    ),
]
AliasName = Annotated[
    str, Path(min_length=1, max_length=63, pattern=ALIAS_PATTERN, description="Alias name")
]
IfMatch = Annotated[
    str | None, Header(description="The alias's current ETag; moving an existing alias needs it")
]


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s request schema inline; what it nests is in the components already
    (the route reads its body itself, so FastAPI does not register ``model``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


_VERSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_schema(ModelVersionCreate)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,  # other fields: 422 (unknown form field)
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The artifact, or a .zip / .tar.gz archive "
                            "holding it (detected by content)",
                        },
                        "artifact_path": {
                            "type": "string",
                            "maxLength": 1024,
                            "description": "For an archive holding several model files: "
                            "the path of the model inside it",
                        },
                        "format": {
                            "type": "string",
                            "enum": list(ARTIFACT_FORMATS),
                            "description": "Artifact format; detected when omitted",
                        },
                        "signature": {"type": "string", "description": "ModelSignature as JSON"},
                        "metadata": {"type": "string", "description": "A JSON object"},
                        "description": {"type": "string"},
                    },
                }
            },
        },
    }
}


def registry_of(context: Any) -> RegistryService:
    registry: RegistryService | None = getattr(context, "registry", None)
    if registry is None:
        raise Unavailable("the model registry is not configured on this server")
    return registry


def models_router(version: ApiVersion) -> APIRouter:
    """The model-registry routes of ``version``: one body of route code for v1 and v2."""
    v2 = version == "v2"
    prefix = f"/{version}/models"
    suffix = "_v2" if v2 else ""
    model_out: type[Model] = ModelV2 if v2 else Model
    version_out: type[ModelVersion] = ModelVersionV2 if v2 else ModelVersion
    alias_out: type[ModelAlias] = ModelAliasV2 if v2 else ModelAlias
    bad = (400,) if v2 else ()  # v2: an unknown API-Date (and forged page tokens) -> 400
    dated: dict[str, Any] = API_DATE_RESPONSE_HEADER if v2 else {}
    router = APIRouter(
        prefix=prefix,
        tags=["Models"],
        dependencies=[Depends(resolve_api_date)] if v2 else [],
    )

    def shaped_model(model: Model) -> Model:
        return ModelV2.of(model) if v2 else model

    def shaped_version(found: ModelVersion) -> ModelVersion:
        return ModelVersionV2.of(found) if v2 else found

    def shaped_alias(alias: ModelAlias) -> ModelAlias:
        return ModelAliasV2.of(alias) if v2 else alias

    # -- models ------------------------------------------------------------------------------

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        name=f"create_model{suffix}",
        summary="Create a model",
        response_model=model_out,
        dependencies=[JsonBody],
        responses={
            **problems(400, 409, 413, 415, 422, *AUTHED),
            201: {
                "description": "The model, with no versions yet",
                "headers": {**ETAG_HEADER, **dated},
                "links": {
                    "GetModel": {
                        "operationId": f"get_model{suffix}",
                        "parameters": {"name": "$response.body#/name"},
                    },
                    "ListModelVersions": {
                        "operationId": f"list_model_versions{suffix}",
                        "parameters": {"name": "$response.body#/name"},
                    },
                },
            },
        },
    )
    async def create_model(
        body: ModelCreate, context: ContextDep, principal: PrincipalDep, response: Response
    ) -> Model:
        """Create a model in your tenant. Names are unique per tenant (409 when taken)."""
        model = await run_in_threadpool(registry_of(context).create_model, principal, body)
        model = shaped_model(model)
        response.headers["Location"] = f"{prefix}/{model.name}"
        response.headers["ETag"] = etag_of(model)
        return model

    if v2:

        @router.get(
            "",
            name="list_models_v2",
            summary="List models",
            response_model=ModelPage,
            responses={
                **problems(400, 422, *AUTHED),
                200: {
                    "description": "One page, newest first",
                    "headers": {**LINK_NEXT_HEADER, **dated},
                },
            },
        )
        async def list_models_v2(
            request: Request,
            context: ContextDep,
            principal: PrincipalDep,
            framework: FrameworkQuery = None,
            tags: TagsQuery = None,
            page_size: PageSizeQuery = 50,
            page_token: PageTokenQuery = None,
        ) -> Response:
            """Your tenant's models, newest first (`created_at desc, id desc`), filtered and
            paged by cursor: no model is repeated or skipped while models are created."""
            tag_filter = parse_tag_filter(tags)
            registry = registry_of(context)
            query = {
                "list": "models",
                "tenant": principal.tenant_id,
                "framework": framework.value if framework else None,
                "tags": sorted(tag_filter.items()),
            }
            models, token = await page_by_time(
                page_tokens(context),
                query,
                page_token,
                page_size,
                lambda after, limit: registry.search_models_after(
                    principal,
                    framework=framework.value if framework else None,
                    tags=tag_filter,
                    after=after,
                    limit=limit,
                ),
            )
            items = [ModelV2.of(m).model_dump(mode="json") for m in models]
            return page_response(request, "models", items, token)

    else:

        @router.get(
            "",
            name="list_models",
            summary="List models",
            response_model=ModelListResponse,
            responses=problems(422, *AUTHED),
        )
        async def list_models(
            context: ContextDep,
            principal: PrincipalDep,
            framework: FrameworkQuery = None,
            tags: TagsQuery = None,
            page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number")] = 1,
            page_size: PageSizeQuery = 50,
        ) -> ModelListResponse:
            """Your tenant's models, newest first (`created_at desc, id desc`), filtered and paginated."""  # noqa: E501 (v1's description, unchanged)
            tag_filter = parse_tag_filter(tags)
            registry = registry_of(context)
            return await run_in_threadpool(
                lambda: registry.search_models(
                    principal,
                    framework=framework.value if framework else None,
                    tags=tag_filter,
                    page=page,
                    page_size=page_size,
                )
            )

    @router.get(
        "/{name}",
        name=f"get_model{suffix}",
        summary="Get a model",
        response_model=model_out,
        responses={
            **problems(*bad, 404, 422, *AUTHED),
            **NOT_MODIFIED,
            200: {"description": "The model", "headers": {**ETAG_HEADER, **dated}},
        },
    )
    async def get_model(
        name: ModelName,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
        if_none_match: IfNoneMatch = None,
    ) -> Any:
        """One model of your tenant, with its latest version and aliases. Honours `If-None-Match`."""  # noqa: E501 (v1's description)
        model = await run_in_threadpool(registry_of(context).get_model, principal, name)
        model = shaped_model(model)
        return _cached(response, model, if_none_match) or model

    @router.patch(
        "/{name}",
        name=f"update_model{suffix}",
        summary="Update a model",
        response_model=model_out,
        dependencies=[JsonBody],
        responses={
            **problems(400, 404, 415, 422, *AUTHED),
            200: {"description": "The model", "headers": {**ETAG_HEADER, **dated}},
        },
    )
    async def update_model(
        name: ModelName,
        body: ModelUpdate,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
    ) -> Model:
        """Change a model's description, tags or framework (only the fields given)."""
        registry = registry_of(context)
        model = shaped_model(await run_in_threadpool(registry.update_model, principal, name, body))
        response.headers["ETag"] = etag_of(model)
        return model

    @router.delete(
        "/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        name=f"delete_model{suffix}",
        summary="Delete a model",
        response_class=Response,
        responses=problems(*bad, 404, 409, 422, *AUTHED),
    )
    async def delete_model(
        name: ModelName, context: ContextDep, principal: PrincipalDep
    ) -> Response:
        """Delete a model with all its versions, aliases and artifacts. 409 while it is deployed."""
        await run_in_threadpool(registry_of(context).delete_model, principal, name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # -- versions ----------------------------------------------------------------------------

    @router.post(
        "/{name}/versions",
        status_code=status.HTTP_201_CREATED,
        name=f"create_model_version{suffix}",
        summary="Register a model version",
        response_model=version_out,
        openapi_extra=_VERSION_BODY,
        responses={
            **problems(400, 404, 409, 413, 415, 422, *AUTHED),
            **rejected_when(400, "a multipart `signature` or `metadata` part is not JSON"),
            **rejected_when(
                422,
                "the file is not a model of a supported format, or `job_id` / `uri` names "
                "no job output or readable artifact",
            ),
            201: {
                "description": "The new version (numbers are consecutive per model)",
                "headers": {**ETAG_HEADER, **dated},
                "links": {
                    "GetModelVersion": {
                        "operationId": f"get_model_version{suffix}",
                        "parameters": {
                            "name": "$response.body#/model",
                            "version": "$response.body#/version",
                        },
                    },
                    "DownloadModelArtifact": {
                        "operationId": f"download_model_artifact{suffix}",
                        "parameters": {
                            "name": "$response.body#/model",
                            "version": "$response.body#/version",
                        },
                    },
                },
            },
        },
    )
    async def create_model_version(
        name: ModelName,
        request: Request,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
    ) -> ModelVersion:
        """Create version N+1 from one of:

        * a succeeded training job of your tenant: `{"job_id": "job_..."}` (its output is copied;
          the version records the job, its hyperparameters and final metrics);
        * an upload: `multipart/form-data` with a `file` part (streamed, size-limited: 413),
          either the model file or a `.zip` / `.tar.gz` archive holding it (detected by content,
          unpacked safely; several model files inside: 422 unless `artifact_path` names one);
        * an artifact URI your tenant may read: `{"artifact_uri": "..."}`.

        The format is detected unless given; the signature is inferred for scikit-learn and
        XGBoost models unless given, by loading the artifact in a sandboxed subprocess.
        A file that is not a model: 422.
        """
        registry = registry_of(context)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media == "multipart/form-data":
            await run_in_threadpool(registry.require_model, principal, name)
            staged, draft = await stage_multipart(
                request, registry.staging, registry.max_upload_bytes
            )
            created = await run_in_threadpool(
                registry.create_version_from_upload, principal, name, staged, draft
            )
        elif media == "application/json" or media.endswith("+json"):
            raw = await read_json_body(request, context.settings.max_body_bytes)
            try:
                body = ModelVersionCreate.model_validate(raw)
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
                ) from None
            created = await run_in_threadpool(registry.create_version, principal, name, body)
        else:
            got = media or "no content type"
            raise UnsupportedMediaType(
                f"send application/json or multipart/form-data (got {got!r})"
            )
        created = shaped_version(created)
        response.headers["Location"] = f"{prefix}/{name}/versions/{created.version}"
        response.headers["ETag"] = etag_of(created)
        return created

    if v2:

        @router.get(
            "/{name}/versions",
            name="list_model_versions_v2",
            summary="List a model's versions",
            response_model=ModelVersionPage,
            responses={
                **problems(400, 404, 422, *AUTHED),
                200: {
                    "description": "One page, highest version first",
                    "headers": {**LINK_NEXT_HEADER, **dated},
                },
            },
        )
        async def list_model_versions_v2(
            request: Request,
            name: ModelName,
            context: ContextDep,
            principal: PrincipalDep,
            page_size: PageSizeQuery = 50,
            page_token: PageTokenQuery = None,
        ) -> Response:
            """A model's versions, highest first, paged by cursor: versions registered
            meanwhile never repeat or skip one."""
            registry = registry_of(context)
            query = {"list": "model_versions", "tenant": principal.tenant_id, "model": name}
            versions, token = await page_by_number(
                page_tokens(context),
                query,
                page_token,
                page_size,
                lambda below, limit: registry.list_versions_below(
                    principal, name, below=below, limit=limit
                ),
                lambda found: found.version,
            )
            items = [ModelVersionV2.of(v).model_dump(mode="json") for v in versions]
            return page_response(request, "versions", items, token)

    else:

        @router.get(
            "/{name}/versions",
            name="list_model_versions",
            summary="List a model's versions",
            response_model=ModelVersionListResponse,
            responses=problems(404, 422, *AUTHED),
        )
        async def list_model_versions(
            name: ModelName,
            context: ContextDep,
            principal: PrincipalDep,
            page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number")] = 1,
            page_size: PageSizeQuery = 50,
        ) -> ModelVersionListResponse:
            """A model's versions, highest first."""
            registry = registry_of(context)
            return await run_in_threadpool(
                lambda: registry.list_versions(principal, name, page=page, page_size=page_size)
            )

    @router.get(
        "/{name}/versions/{version}",
        name=f"get_model_version{suffix}",
        summary="Get a model version",
        response_model=version_out,
        responses={
            **problems(*bad, 404, 422, *AUTHED),
            **NOT_MODIFIED,
            200: {"description": "The version", "headers": {**ETAG_HEADER, **dated}},
        },
    )
    async def get_model_version(
        name: ModelName,
        version: VersionRef,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
        if_none_match: IfNoneMatch = None,
    ) -> Any:
        """One version, by number, alias (`production`) or `latest`. Honours `If-None-Match`."""
        registry = registry_of(context)
        found = shaped_version(
            await run_in_threadpool(registry.get_version, principal, name, version)
        )
        return _cached(response, found, if_none_match) or found

    @router.get(
        "/{name}/versions/{version}/artifact",
        name=f"download_model_artifact{suffix}",
        summary="Download a version's artifact",
        response_class=StreamingResponse,
        responses={
            **problems(*bad, 404, 422, *AUTHED),
            **NOT_MODIFIED,
            200: {
                "description": "The artifact's bytes, streamed; the ETag is its SHA-256",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
                "headers": {**ETAG_HEADER, **dated},
            },
        },
    )
    async def download_model_artifact(
        name: ModelName,
        version: VersionRef,
        context: ContextDep,
        principal: PrincipalDep,
        if_none_match: IfNoneMatch = None,
    ) -> Response:
        """The artifact exactly as registered (same SHA-256), streamed."""
        found, chunks = await run_in_threadpool(
            registry_of(context).open_artifact, principal, name, version
        )
        etag = f'"{found.sha256}"'
        if _matches(if_none_match, etag):
            chunks.close()  # type: ignore[attr-defined]
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        filename = found.source.filename or "model"
        headers = {
            "ETag": etag,
            "Content-Length": str(found.size_bytes),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-SHA256": found.sha256,
            "Cache-Control": "private, max-age=31536000, immutable",
        }
        return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)

    @router.delete(
        "/{name}/versions/{version}",
        status_code=status.HTTP_204_NO_CONTENT,
        name=f"delete_model_version{suffix}",
        summary="Delete a model version",
        response_class=Response,
        responses=problems(*bad, 404, 409, 422, *AUTHED),
    )
    async def delete_model_version(
        name: ModelName, version: VersionNumber, context: ContextDep, principal: PrincipalDep
    ) -> Response:
        """Delete one version (by number) and its artifact. 409 while deployed or aliased.

        Its number is never reused.
        """
        await run_in_threadpool(registry_of(context).delete_version, principal, name, version)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # -- aliases -----------------------------------------------------------------------------

    @router.get(
        "/{name}/aliases/{alias}",
        name=f"get_model_alias{suffix}",
        summary="Get a model alias",
        response_model=alias_out,
        responses={
            **problems(*bad, 404, 422, *AUTHED),
            **NOT_MODIFIED,
            200: {"description": "The alias", "headers": {**ETAG_HEADER, **dated}},
        },
    )
    async def get_model_alias(
        name: ModelName,
        alias: AliasName,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
        if_none_match: IfNoneMatch = None,
    ) -> Any:
        """Where an alias points; `latest` is implicit (the highest version). Send its ETag
        back in `If-Match` to move it."""
        result = await run_in_threadpool(registry_of(context).get_alias, principal, name, alias)
        etag = f'"{result.etag}"'
        if _matches(if_none_match, etag):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return shaped_alias(result.alias)

    @router.put(
        "/{name}/aliases/{alias}",
        name=f"set_model_alias{suffix}",
        summary="Create or move a model alias",
        response_model=alias_out,
        dependencies=[JsonBody],
        responses={
            **problems(400, 404, 412, 415, 422, *AUTHED),
            **rejected_when(422, "`version` names no version of the model"),
            200: {"description": "The alias, moved", "headers": {**ETAG_HEADER, **dated}},
            201: {"description": "The alias, created", "headers": {**ETAG_HEADER, **dated}},
        },
    )
    async def set_model_alias(
        name: ModelName,
        alias: AliasName,
        body: ModelAliasUpdate,
        context: ContextDep,
        principal: PrincipalDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> ModelAlias:
        """Point an alias (`production`, `staging`, ...) at a version.

        Creating one needs no header. Moving an existing one needs `If-Match` with the ETag
        from your last GET: when someone moved it meanwhile, 412 (nothing changes).
        """
        registry = registry_of(context)
        result = await run_in_threadpool(
            lambda: registry.set_alias(
                principal, name, alias, body.version, if_match=_if_match(if_match)
            )
        )
        response.headers["ETag"] = f'"{result.etag}"'
        if result.created:
            response.status_code = status.HTTP_201_CREATED
        return shaped_alias(result.alias)

    @router.delete(
        "/{name}/aliases/{alias}",
        status_code=status.HTTP_204_NO_CONTENT,
        name=f"delete_model_alias{suffix}",
        summary="Delete a model alias",
        response_class=Response,
        responses=problems(*bad, 404, 412, 422, *AUTHED),
    )
    async def delete_model_alias(
        name: ModelName,
        alias: AliasName,
        context: ContextDep,
        principal: PrincipalDep,
        if_match: IfMatch = None,
    ) -> Response:
        """Remove an alias (its version stays). With `If-Match`, only if unchanged (else 412)."""
        registry = registry_of(context)
        await run_in_threadpool(
            lambda: registry.delete_alias(principal, name, alias, if_match=_if_match(if_match))
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


router = models_router("v1")
