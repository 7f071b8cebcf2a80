"""FastAPI dependencies: the context, the caller, and ``Annotated`` aliases for routes.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hop per request (~0.1 ms) for work that never blocks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ml_platform.api.context import ApiContext
from ml_platform.api.credentials import (
    BEARER_AUTH_DESCRIPTION,
    authenticate,
    bearer_credential,
)
from ml_platform.api.ratelimit import enforce_rate_limit
from ml_platform.auth.principal import Principal, ensure_admin
from ml_platform.core.errors import UnsupportedMediaType
from ml_platform.store.records import TenantRecord

api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`mlp_...`)"
)
# Both read `Authorization`: BearerAuth (apiKey type) is what the seed's generated-client line
# `config.api_key['BearerAuth'] = token` fills; HTTPBearer is for clients that speak http bearer
# (Swagger UI, `accessToken` in typescript-axios). One parser, `bearer_credential`, reads it.
bearer_auth_scheme = APIKeyHeader(
    name="Authorization",
    scheme_name="BearerAuth",
    auto_error=False,
    description=BEARER_AUTH_DESCRIPTION,
)
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="API key (mlp_...) or JWT",
    description="`Authorization: Bearer <token>`: an API key (`mlp_...`) or a JWT",
)


async def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_principal(
    request: Request,
    context: ContextDep,
    api_key: Annotated[str | None, Security(api_key_scheme)],
    authorization: Annotated[str | None, Security(bearer_auth_scheme)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    token = bearer_credential(authorization)
    principal = await authenticate(context.auth, api_key, token)
    request.state.principal = principal  # who the audit event names (ml_platform.api.audit)
    await enforce_rate_limit(request, principal)  # 429 over the control budget
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, if it holds the admin role; else 403 problem ``ADMIN_REQUIRED``."""
    return ensure_admin(principal)


AdminDep = Annotated[Principal, Depends(require_admin)]


async def get_target_tenant(
    _admin: AdminDep,
    context: ContextDep,
    tenant: Annotated[
        str,
        Path(
            min_length=1,
            max_length=63,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="The tenant acted on: its name or its id (`ten_...`)",
            examples=["team-a"],
        ),
    ],
) -> TenantRecord:
    """The ``{tenant}`` of an ``/v1/admin/tenants/{tenant}/...`` route (404 when unknown)."""
    return await run_in_threadpool(context.auth.resolve_tenant, tenant)


TargetTenantDep = Annotated[TenantRecord, Depends(get_target_tenant)]


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (FastAPI would otherwise guess)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json (got {media or 'no content type'!r})"
        )


JsonBody = Depends(require_json)
