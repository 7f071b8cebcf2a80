"""``mlp admin create-api-key --admin`` and ``mlp admin quota ...``: real subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ml_platform.cli.main import app
from tests.api.job_specs import spec
from tests.cli.test_admin_cli import _json, env, run
from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow

__all__ = ["env"]  # the fixture, shared with test_admin_cli


def test_create_api_key_admin_flag(env: dict[str, str], tmp_path: Path) -> None:
    run("admin", "create-tenant", "ops", env=env)
    admin = _json(
        run("admin", "create-api-key", "--tenant", "ops", "--admin", "-o", "json", env=env)
    )
    user = _json(run("admin", "create-api-key", "--tenant", "ops", "-o", "json", env=env))
    assert admin["admin"] is True and user["admin"] is False
    text = run("admin", "create-api-key", "--tenant", "ops", "--admin", env=env).stdout
    assert "(administrator)" in text


def _row(*cells: str) -> str:
    """A table row's cells in order, whatever the box characters between them."""
    return r"[\s│]+".join(re.escape(c) for c in cells)


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result


def _store_options(platform: Platform) -> list[str]:
    return [
        "--data-dir",
        str(platform.settings.data_dir),
        "--database-url",
        platform.settings.resolved_database_url,
    ]


def test_admin_quota_set_and_show_then_mlp_quotas(
    platform: Platform, tenant: Tenant, tmp_path: Path
) -> None:
    store = _store_options(platform)
    set_ = _cli(
        "admin", "quota", "set", tenant.name, "--max-queued-jobs", "1", "--max-gpus", "2",
        *store, "-o", "json",
    )  # fmt: skip
    assert set_.exit_code == 0, set_.output
    items = {q["name"]: q for q in json.loads(set_.stdout)["quotas"]}
    assert items["max_queued_jobs"]["limit"] == 1 and items["max_gpus"]["limit"] == 2
    reset = _cli("admin", "quota", "set", tenant.id, "--reset", "max_gpus", *store, "-o", "json")
    assert reset.exit_code == 0, reset.output
    items = {q["name"]: q for q in json.loads(reset.stdout)["quotas"]}
    assert items["max_gpus"]["source"] == "default" and items["max_queued_jobs"]["limit"] == 1
    shown = _cli("admin", "quota", "show", tenant.name, *store)
    assert shown.exit_code == 0, shown.output
    assert re.search(_row("max_queued_jobs", "1", "0", "jobs", "hard", "override"), shown.stdout)
    # the limit holds for the API at once, and the tenant sees it with `mlp quotas`
    client = platform.client(tenant)
    assert client.post("/v1/jobs/training", json=spec()).status_code == 201
    assert client.post("/v1/jobs/training", json=spec()).status_code == 429
    env = {
        "ML_PLATFORM_URL": platform.base_url,
        "ML_PLATFORM_API_KEY": tenant.api_key,
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path),
    }
    mine = _cli("quotas", env=env)
    assert mine.exit_code == 0, mine.output
    assert re.search(_row("max_queued_jobs", "1", "1", "jobs", "hard", "override"), mine.stdout)
    assert re.search(_row("max_gpus", "-", "0", "GPUs", "delay", "default"), mine.stdout)


def test_admin_quota_set_refuses_bad_input(platform: Platform, tenant: Tenant) -> None:
    store = _store_options(platform)
    nothing = _cli("admin", "quota", "set", tenant.name, *store)
    assert nothing.exit_code == 1 and "nothing to change" in nothing.output
    unknown = _cli("admin", "quota", "set", tenant.name, "--reset", "max_jobs", *store)
    assert unknown.exit_code == 1 and "unknown quota 'max_jobs'" in unknown.output
    missing = _cli("admin", "quota", "show", "no-such-tenant-q", *store)
    assert missing.exit_code == 1 and "not found" in missing.output


def test_cli_admin_mutations_each_leave_one_audit_event_naming_the_operator(
    platform: Platform, tenant: Tenant
) -> None:
    import getpass

    from ml_platform.store.audit import AuditStore

    store = _store_options(platform)
    audit = AuditStore(platform.db)
    before = {e.id for e in audit.events(limit=1000)}

    def new_events() -> list[Any]:
        return [e for e in reversed(audit.events(limit=1000)) if e.id not in before]

    ok = _cli("admin", "quota", "set", tenant.name, "--max-deployments", "3", *store)
    assert ok.exit_code == 0, ok.output
    refused = _cli("admin", "quota", "set", "no-such-tenant", "--max-gpus", "1", *store)
    assert refused.exit_code != 0
    key = _cli("admin", "create-api-key", "--tenant", tenant.name, *store, "-o", "json")
    assert key.exit_code == 0, key.output
    created = json.loads(key.stdout)
    revoked = _cli("admin", "revoke-api-key", created["id"], *store)
    assert revoked.exit_code == 0, revoked.output
    events = new_events()
    assert [(e.action, e.outcome, e.tenant_id, e.resource) for e in events] == [
        ("admin.tenants.quotas.update", 200, tenant.id, tenant.id),
        ("admin.tenants.quotas.update", 404, None, None),
        ("admin.api_keys.create", 201, tenant.id, created["id"]),
        ("admin.api_keys.revoke", 200, tenant.id, created["id"]),
    ]
    for event in events:
        assert event.principal == f"cli:{getpass.getuser()}"
        assert (event.credential, event.method) == ("cli", "CLI")
        assert event.route is not None and event.route.startswith("mlp admin ")
        assert created["api_key"] not in repr(event)
