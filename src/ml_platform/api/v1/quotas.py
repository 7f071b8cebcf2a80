"""v1 quotas: the caller's tenant's limits beside its usage; administrators read and set any
tenant's (``/v1/admin/tenants/{tenant}/quotas``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ml_platform.api.deps import ContextDep, JsonBody, PrincipalDep, TargetTenantDep
from ml_platform.api.responses import AUTHED, problems
from ml_platform.core.errors import Unavailable
from ml_platform.governance.quotas import QuotaService, quota_view
from ml_platform.schemas.quotas import TenantQuotaOverrides, TenantQuotas

router = APIRouter(prefix="/v1", tags=["Quotas"])

_ADMIN = (403, 404, *AUTHED)


def _service(context: ContextDep) -> QuotaService:
    if context.quotas is None:
        raise Unavailable("quotas are not configured on this server")
    return context.quotas


@router.get(
    "/quotas",
    name="get_quotas",
    summary="My tenant's quotas and usage",
    response_model=TenantQuotas,
    responses=problems(*AUTHED),
)
async def get_quotas(context: ContextDep, principal: PrincipalDep) -> TenantQuotas:
    """Every quota of the caller's tenant: the limit in force (`null`: none), where it comes
    from (platform default or an administrator's override) and the current usage.

    `delay` quotas keep jobs pending (with the reason) while the tenant's running jobs hold
    that much; over a `hard` quota a creation answers 429 `QUOTA_EXCEEDED`."""
    service = _service(context)
    report = await run_in_threadpool(service.report, principal.tenant_id)
    tenant = await run_in_threadpool(context.auth.tenant_by_id, principal.tenant_id)
    return quota_view(report, tenant.name)


@router.get(
    "/admin/tenants/{tenant}/quotas",
    name="get_tenant_quotas",
    summary="A tenant's quotas and usage (administrators)",
    response_model=TenantQuotas,
    responses=problems(*_ADMIN),
)
async def get_tenant_quotas(context: ContextDep, target: TargetTenantDep) -> TenantQuotas:
    """The quotas of any tenant, named by name or id. Needs an administrator's credentials
    (else 403 `ADMIN_REQUIRED`)."""
    report = await run_in_threadpool(_service(context).report, target.id)
    return quota_view(report, target.name)


@router.put(
    "/admin/tenants/{tenant}/quotas",
    name="replace_tenant_quotas",
    summary="Set all of a tenant's quota overrides (administrators)",
    response_model=TenantQuotas,
    dependencies=[JsonBody],
    responses=problems(*_ADMIN, 400, 413, 415, 422),
)
async def replace_tenant_quotas(
    body: TenantQuotaOverrides, context: ContextDep, target: TargetTenantDep
) -> TenantQuotas:
    """Replace the tenant's overrides: each field given sets that quota, each absent or
    `null` field returns it to the platform default. Takes effect at once: the next creation
    and the scheduler's next pass use it."""
    service = _service(context)
    values = body.model_dump()
    report = await run_in_threadpool(service.replace_overrides, target.id, values)
    return quota_view(report, target.name)


@router.patch(
    "/admin/tenants/{tenant}/quotas",
    name="update_tenant_quotas",
    summary="Change some of a tenant's quota overrides (administrators)",
    response_model=TenantQuotas,
    dependencies=[JsonBody],
    responses=problems(*_ADMIN, 400, 413, 415, 422),
)
async def update_tenant_quotas(
    body: TenantQuotaOverrides, context: ContextDep, target: TargetTenantDep
) -> TenantQuotas:
    """Change only the fields given; `null` returns that quota to the platform default."""
    service = _service(context)
    changes = body.model_dump(include=body.model_fields_set)
    report = await run_in_threadpool(service.update_overrides, target.id, changes)
    return quota_view(report, target.name)
