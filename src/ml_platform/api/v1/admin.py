"""Administrators' reports: API usage per tenant and the audit trail (``/v1/admin/...``).

Both answer 403 ``ADMIN_REQUIRED`` to a user's credentials (``api.deps.AdminDep``) and read
through the same store queries as ``mlp admin usage`` / ``mlp admin audit``. A ``tenant``
filter takes a name or an id; an id no tenant has any more still filters (usage and events
outlive their tenant).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ml_platform.api.context import ApiContext
from ml_platform.api.deps import AdminDep, ContextDep
from ml_platform.api.responses import AUTHED, problems
from ml_platform.api.versioning import LINK_NEXT_HEADER, PageTokens, next_link
from ml_platform.core.errors import FieldViolation, MalformedRequest, NotFound
from ml_platform.governance.usage import UsageRecorder
from ml_platform.schemas.audit import AuditEventOut, AuditEventPage
from ml_platform.schemas.usage import UsageCountOut, UsagePage
from ml_platform.store.audit import AuditStore
from ml_platform.store.audit_writer import AuditWriter
from ml_platform.store.usage import UsageStore

router = APIRouter(prefix="/v1/admin", tags=["Administration"])

TenantQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Only this tenant: its name, or its id (`ten_...`, also once deleted)",
        examples=["team-a"],
    ),
]
ACTION_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$"


def _tenant_id(context: ApiContext, ref: str | None) -> str | None:
    if ref is None:
        return None
    try:
        return context.auth.resolve_tenant(ref).id
    except NotFound:
        return ref  # a deleted tenant's trail and usage stay readable by its id


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get(
    "/usage",
    name="get_api_usage",
    summary="API usage per tenant",
    response_model=UsagePage,
    responses=problems(403, 422, *AUTHED),
)
async def get_api_usage(
    request: Request,
    context: ContextDep,
    _admin: AdminDep,
    tenant: TenantQuery = None,
    since: Annotated[
        date | None, Query(description="From this UTC day on (inclusive), `YYYY-MM-DD`")
    ] = None,
    version: Annotated[
        str | None,
        Query(pattern=r"^v[0-9]{1,3}$", description="Only this API version", examples=["v1"]),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1")] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Rows per page")] = 100,
) -> UsagePage:
    """Requests per UTC day, tenant, API version, method and route template, newest day
    first and busiest first: whom to help migrate off v1 (`version=v1`). Includes this
    replica's counts not yet flushed; other replicas' within `ML_PLATFORM_USAGE_FLUSH_SECONDS`."""
    recorder: UsageRecorder = request.app.state.usage

    def read() -> UsagePage:
        recorder.flush()
        tenant_id = _tenant_id(context, tenant)
        rows = UsageStore(context.db).counts(tenant_id=tenant_id, since=since, api_version=version)
        names = {t.id: t.name for t in context.auth.tenants()}
        start = (page - 1) * page_size
        chosen = rows[start : start + page_size]
        return UsagePage(
            usage=[
                UsageCountOut(
                    day=r.key.day,
                    tenant_id=r.key.tenant_id or None,
                    tenant=names.get(r.key.tenant_id),
                    api_version=r.key.api_version,
                    method=r.key.method,
                    route=r.key.route,
                    count=r.count,
                    last_seen_at=r.last_seen_at,
                )
                for r in chosen
            ],
            total=len(rows),
            page=page,
            page_size=page_size,
            has_more=start + len(chosen) < len(rows),
        )

    return await run_in_threadpool(read)


@router.get(
    "/audit",
    name="list_audit_events",
    summary="List audit events",
    response_model=AuditEventPage,
    responses={
        **problems(400, 403, 422, *AUTHED),
        200: {"description": "One page, newest first", "headers": LINK_NEXT_HEADER},
    },
)
async def list_audit_events(
    request: Request,
    context: ContextDep,
    _admin: AdminDep,
    tenant: TenantQuery = None,
    principal: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="Only this API key name or JWT subject",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=ACTION_PATTERN,
            description="e.g. `jobs.create`, `auth.failed`; `jobs.*` for a prefix",
        ),
    ] = None,
    outcome: Annotated[
        int | None, Query(ge=100, le=599, description="Only this HTTP status")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="From this instant (inclusive, ISO 8601; UTC if bare)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Before this instant (exclusive, ISO 8601)")
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=500, description="Events per page")] = 100,
    page_token: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="`next_page_token` of the previous page, with the same filters",
        ),
    ] = None,
) -> Any:
    """Who did what: every mutating request and every authentication failure, newest first,
    filtered like `mlp admin audit`, paged by cursor (`next_page_token`, `Link: rel="next"`):
    no event is repeated or skipped while new ones are written."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and until <= since:
        raise MalformedRequest(
            "until must be later than since",
            [FieldViolation("query.until", "not after since")],
        )
    query: dict[str, Any] = {
        "tenant": tenant,
        "principal": principal,
        "action": action,
        "outcome": outcome,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    tokens = PageTokens(context.settings.jwt_secret.get_secret_value())
    before_id: int | None = None
    if page_token is not None:
        _, last_id = tokens.read(page_token, query)
        if not last_id.isdigit():
            raise MalformedRequest(
                "page_token is not a token this listing issued; pass next_page_token unchanged",
                [FieldViolation("query.page_token", "not a valid page token")],
            )
        before_id = int(last_id)
    writer: AuditWriter | None = getattr(request.app.state, "audit_writer", None)
    if writer is not None:  # buffered delivery: this process's events are in before the read
        await writer.drain()

    def read() -> list[Any]:
        return AuditStore(context.db).events(
            tenant_id=_tenant_id(context, tenant),
            principal=principal,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            before_id=before_id,
            limit=page_size + 1,
        )

    events = await run_in_threadpool(read)
    token = None
    if len(events) > page_size:
        events = events[:page_size]
        token = tokens.issue(query, events[-1].occurred_at, str(events[-1].id))
    body = AuditEventPage(
        events=[AuditEventOut.model_validate(e.as_dict()) for e in events],
        next_page_token=token,
    )
    headers = {"Link": next_link(request, token)} if token is not None else {}
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
