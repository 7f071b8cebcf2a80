"""``mlp admin``: tenants, API keys and tokens, acting directly on the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from ml_platform.cli._common import (
    DatabaseUrlOption,
    DataDirOption,
    Output,
    OutputOption,
    console,
    emit_json,
    fail,
    load_settings,
    new_app,
    open_platform,
    show_table,
)

app = new_app(help="Administer tenants, API keys and tokens.")


def _auth(data_dir: object, database_url: object):  # type: ignore[no-untyped-def]
    """The auth service, the error type its refusals raise, and ``audited`` on its database."""
    from functools import partial

    from ml_platform.cli._audit import audited
    from ml_platform.core.errors import PlatformError

    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    return context.auth, PlatformError, partial(audited, context.db)


@app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name, ^[a-z0-9][a-z0-9-]{0,62}$")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Create a tenant."""
    auth, error, audited = _auth(data_dir, database_url)
    try:
        with audited("admin.tenants.create", "mlp admin create-tenant") as event:
            tenant = auth.create_tenant(name)
            event.tenant_id = event.resource = tenant.id
            event.outcome = 201
    except error as exc:
        fail(str(exc))
    if output is Output.JSON:
        emit_json({"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at})
    else:
        console.print(f"created tenant [bold]{tenant.name}[/] ({tenant.id})")


@app.command("create-api-key")
def create_api_key(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name")],
    name: Annotated[str, typer.Option("--name", help="Key name (recorded as created_by)")] = "cli",
    admin: Annotated[
        bool, typer.Option("--admin", help="An administrator's key: may call /v1/admin/...")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Create an API key. The key is printed once and never stored in clear."""
    auth, error, audited = _auth(data_dir, database_url)
    try:
        with audited("admin.api_keys.create", "mlp admin create-api-key") as event:
            event.tenant_id = auth.resolve_tenant(tenant).id
            created = auth.create_api_key(tenant, name, admin=admin)
            event.resource, event.outcome = created.record.id, 201
    except error as exc:
        fail(str(exc))
    record = created.record
    if output is Output.JSON:
        emit_json(
            {
                "id": record.id,
                "tenant_id": record.tenant_id,
                "tenant": tenant,
                "name": record.name,
                "prefix": record.prefix,
                "created_at": record.created_at,
                "admin": record.is_admin,
                "api_key": created.plaintext,
            }
        )
    else:
        role = " (administrator)" if record.is_admin else ""
        console.print(f"API key [bold]{record.name}[/] ({record.id}){role} for tenant {tenant}:")
        console.print(created.plaintext, markup=False, highlight=False)
        console.print("[dim]Store it now: it is shown only once.[/]")


@app.command("revoke-api-key")
def revoke_api_key(
    key: Annotated[str, typer.Argument(help="The key id (key_...) or the key itself")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Revoke an API key; requests with it get 401 from now on."""
    auth, error, audited = _auth(data_dir, database_url)
    try:
        with audited("admin.api_keys.revoke", "mlp admin revoke-api-key") as event:
            record = auth.revoke_api_key(key)
            event.tenant_id, event.resource = record.tenant_id, record.id
    except error as exc:
        fail(str(exc))
    if output is Output.JSON:
        emit_json({"id": record.id, "name": record.name, "revoked_at": record.revoked_at})
    else:
        console.print(f"revoked API key {record.name} ({record.id})")


@app.command("issue-token")
def issue_token(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name")],
    subject: Annotated[str, typer.Option("--subject", help="The token's sub claim")] = "cli",
    ttl_hours: Annotated[float, typer.Option("--ttl-hours", help="Lifetime in hours")] = 24.0,
    admin: Annotated[
        bool, typer.Option("--admin", help="Carry the claim role=admin (/v1/admin/...)")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Issue an HS256 JWT for a tenant, signed with ML_PLATFORM_JWT_SECRET."""
    auth, error, _ = _auth(data_dir, database_url)
    try:
        token = auth.issue_token(tenant, subject, timedelta(hours=ttl_hours), admin=admin)
    except error as exc:
        fail(str(exc))
    if output is Output.JSON:
        emit_json({"token": token, "tenant": tenant, "sub": subject, "ttl_hours": ttl_hours})
    else:
        console.print(token, markup=False, highlight=False)


@app.command("rotate-secrets")
def rotate_secrets(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Re-encrypt every stored job env var value with the newest ML_PLATFORM_SECRETS_KEY.

    The last step of a key rotation: put the new key first (NEW,OLD), restart, run this,
    then drop the old key.
    """
    from ml_platform.cli._audit import audited
    from ml_platform.store.jobs import rotate_env_vars

    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    with (
        audited(context.db, "admin.secrets.rotate", "mlp admin rotate-secrets"),
        context.db.transaction() as session,
    ):
        changed = rotate_env_vars(session)
    if output is Output.JSON:
        emit_json({"jobs_rewritten": changed})
    else:
        console.print(f"re-encrypted the env vars of {changed} job(s) with the newest key")


def _since(value: str, option: str = "--since") -> datetime:
    """``30m`` / ``12h`` / ``7d`` ago, or an ISO 8601 instant (UTC when it names no zone)."""
    from ml_platform.store.base import utcnow

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip()
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return utcnow() - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected a duration (30m, 12h, 7d) or an ISO 8601 time, got {value!r}",
            param_hint=option,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tenant_id(context: object, tenant: str | None) -> str | None:
    """A tenant name or id as the stored id; an unknown one is taken as the id of a deleted
    tenant (audit events and usage outlive their tenant)."""
    from ml_platform.core.errors import NotFound

    if tenant is None:
        return None
    try:
        tenant_id: str = context.auth.resolve_tenant(tenant).id  # type: ignore[attr-defined]
    except NotFound:
        return tenant
    return tenant_id


@app.command("audit")
def audit(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name (or id, for a deleted tenant)")
    ] = None,
    principal: Annotated[
        str | None, typer.Option("--principal", help="API key name or JWT subject")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="e.g. jobs.create, auth.failed; jobs.* for a prefix"),
    ] = None,
    outcome: Annotated[
        int | None, typer.Option("--outcome", min=100, max=599, help="HTTP status, e.g. 403")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="30m, 12h, 7d, or an ISO 8601 time")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this: 30m, 12h, 7d ago, or ISO 8601")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first")
    ] = 100,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Audit events (who did what), newest first: every mutating request and auth failure.
    The same query as GET /v1/admin/audit."""
    from ml_platform.store.audit import AuditStore

    moment = _since(since) if since is not None else None
    before = _since(until, "--until") if until is not None else None
    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    events = AuditStore(context.db).events(
        tenant_id=_tenant_id(context, tenant),
        principal=principal,
        action=action,
        outcome=outcome,
        since=moment,
        until=before,
        limit=limit,
    )
    if output is Output.JSON:
        emit_json([event.as_dict() for event in events])
        return
    show_table(
        None,
        ["time", "tenant", "principal", "action", "resource", "outcome", "request id", "client"],
        [
            [
                e.occurred_at,
                e.tenant_id,
                e.principal,
                e.action,
                e.resource,
                e.outcome,
                e.request_id,
                e.client,
            ]
            for e in events
        ],
        keep=("time",),
    )


@app.command("usage")
def usage(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name (or id, for a deleted tenant)")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this UTC day: 7d, or YYYY-MM-DD")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Only this API version, e.g. v1")
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """REST requests per UTC day, tenant, API version and route (whom to help off v1).

    Counts reach the store every ML_PLATFORM_USAGE_FLUSH_SECONDS and at server shutdown.
    The same query as GET /v1/admin/usage."""
    from ml_platform.store.usage import UsageStore

    day = _since(since).date() if since is not None else None
    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    rows = UsageStore(context.db).counts(
        tenant_id=_tenant_id(context, tenant), since=day, api_version=version
    )
    names = {t.id: t.name for t in context.auth.tenants()}
    if output is Output.JSON:
        emit_json([{**r.as_dict(), "tenant": names.get(r.key.tenant_id)} for r in rows])
        return
    show_table(
        None,
        ["day", "tenant", "version", "method", "route", "requests", "last seen"],
        [
            [
                r.key.day.isoformat(),
                names.get(r.key.tenant_id, r.key.tenant_id or "(unauthenticated)"),
                r.key.api_version,
                r.key.method,
                r.key.route,
                r.count,
                r.last_seen_at,
            ]
            for r in rows
        ],
        keep=("day",),
    )


quota_app = new_app(help="Show and set a tenant's quotas (acting on the store).")
app.add_typer(quota_app, name="quota")

_LIMIT = "Quota override (unset: keep; see --reset)"


@quota_app.command("show")
def quota_show(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """A tenant's quotas beside its usage (the same document as GET /v1/quotas)."""
    from ml_platform.cli.quotas import show_quotas
    from ml_platform.core.errors import PlatformError
    from ml_platform.governance.quotas import quota_view

    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    assert context.quotas is not None
    try:
        target = context.auth.resolve_tenant(tenant)
    except PlatformError as exc:
        fail(str(exc))
    view = quota_view(context.quotas.report(target.id), target.name)
    show_quotas(view.model_dump(mode="json"), output)


@quota_app.command("set")
def quota_set(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id")],
    max_concurrent_jobs: Annotated[
        int | None, typer.Option("--max-concurrent-jobs", min=0, help=_LIMIT)
    ] = None,
    max_gpus: Annotated[int | None, typer.Option("--max-gpus", min=0, help=_LIMIT)] = None,
    max_cpu_cores: Annotated[
        float | None, typer.Option("--max-cpu-cores", min=0, help=_LIMIT)
    ] = None,
    max_memory_gb: Annotated[
        float | None, typer.Option("--max-memory-gb", min=0, help=_LIMIT)
    ] = None,
    max_queued_jobs: Annotated[
        int | None, typer.Option("--max-queued-jobs", min=0, help=_LIMIT)
    ] = None,
    max_deployments: Annotated[
        int | None, typer.Option("--max-deployments", min=0, help=_LIMIT)
    ] = None,
    max_storage_bytes: Annotated[
        int | None, typer.Option("--max-storage-bytes", min=0, help=_LIMIT)
    ] = None,
    reset: Annotated[
        list[str] | None,
        typer.Option("--reset", help="Back to the platform default: a quota name (repeatable)"),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Change a tenant's quota overrides; quotas not named keep theirs (like PATCH
    /v1/admin/tenants/{tenant}/quotas). Takes effect at once."""
    from ml_platform.cli._audit import audited
    from ml_platform.cli.quotas import show_quotas
    from ml_platform.core.errors import PlatformError
    from ml_platform.governance.quotas import quota_view

    given = {
        "max_concurrent_jobs": max_concurrent_jobs,
        "max_gpus": max_gpus,
        "max_cpu_cores": max_cpu_cores,
        "max_memory_gb": max_memory_gb,
        "max_queued_jobs": max_queued_jobs,
        "max_deployments": max_deployments,
        "max_storage_bytes": max_storage_bytes,
    }
    changes: dict[str, float | None] = {k: v for k, v in given.items() if v is not None}
    for name in reset or []:
        if name in changes:
            fail(f"{name} is both set and reset")
        changes[name] = None
    if not changes:
        fail("nothing to change: give --max-... values or --reset NAME")
    context = open_platform(load_settings(data_dir=data_dir, database_url=database_url))
    assert context.quotas is not None
    try:
        # the action PATCH /v1/admin/tenants/{tenant}/quotas records
        with audited(context.db, "admin.tenants.quotas.update", "mlp admin quota set") as event:
            target = context.auth.resolve_tenant(tenant)
            event.tenant_id = event.resource = target.id
            report = context.quotas.update_overrides(target.id, changes)
    except PlatformError as exc:
        fail(str(exc))
    show_quotas(quota_view(report, target.name).model_dump(mode="json"), output)
