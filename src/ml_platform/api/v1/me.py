"""v1 who am I: the authenticated principal, its tenant, and where its data goes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from ml_platform.api.deps import ContextDep, PrincipalDep
from ml_platform.api.responses import AUTHED, problems
from ml_platform.data.service import DATA_PREFIX

router = APIRouter(prefix="/v1", tags=["Identity"])


class Me(BaseModel):
    """Who the credentials sent with this request belong to."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "principal": "default-admin",
                    "auth_method": "api_key",
                    "tenant_id": "ten_01hx0000000000000000000000",
                    "tenant_name": "default",
                    "data_prefix": "data/",
                }
            ]
        }
    )

    principal: str = Field(description="The API key's name, or the JWT's `sub`")
    auth_method: Literal["api_key", "jwt"]
    tenant_id: str
    tenant_name: str
    data_prefix: str = Field(
        description="What a job's `data_path` starts with to name a file uploaded with "
        "`PUT /v1/data/{path}` (`data/<path>`)"
    )


@router.get(
    "/me",
    name="get_me",
    summary="Who am I",
    response_model=Me,
    responses=problems(*AUTHED),
)
async def get_me(context: ContextDep, principal: PrincipalDep) -> Me:
    """The principal these credentials authenticate, its tenant and its data area."""
    tenant = await run_in_threadpool(context.auth.tenant_by_id, principal.tenant_id)
    return Me(
        principal=principal.name,
        auth_method=principal.kind.value,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        data_prefix=DATA_PREFIX,
    )
