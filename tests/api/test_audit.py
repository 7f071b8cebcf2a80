"""Audit events on a live server, both stores: one event per mutating request and per auth
failure, with the right principal, action and resource, no secret anywhere in the table, and
``mlp admin audit`` (a real subprocess) listing them with its filters."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from ml_platform.api.audit import action_of
from ml_platform.store.audit import AuditEvent, AuditStore
from ml_platform.store.base import utcnow
from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow

ENV_SECRET = "audit-env-" + "z" * 24


def _events(platform: Platform, tenant: Tenant) -> list[AuditEvent]:
    """The tenant's events, oldest first."""
    return list(reversed(AuditStore(platform.db).events(tenant_id=tenant.id, limit=1000)))


def _by_request(platform: Platform, request_id: str) -> list[AuditEvent]:
    return [e for e in AuditStore(platform.db).events(limit=1000) if e.request_id == request_id]


def _raw_table_text(platform: Platform) -> str:
    with platform.db.read() as session:
        rows = session.execute(text("SELECT * FROM audit_events")).all()
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def _create_cancel_delete(platform: Platform, tenant: Tenant) -> dict[str, Any]:
    client = platform.client(tenant)
    created = client.post("/v1/jobs/training", json=spec(env_vars={"TOKEN": ENV_SECRET}))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert client.get(f"/v1/jobs/training/{job_id}").status_code == 200  # a read: no event
    cancelled = client.delete(f"/v1/jobs/training/{job_id}")
    assert cancelled.status_code in (202, 204), cancelled.text
    name = f"m-{secrets.token_hex(3)}"
    model = client.post("/v1/models", json={"name": name, "framework": "sklearn"})
    assert model.status_code == 201, model.text
    deleted = client.delete(f"/v1/models/{name}")
    assert deleted.status_code == 204, deleted.text
    return {
        "job_id": job_id,
        "model": name,
        "request_ids": [r.headers["x-request-id"] for r in (created, cancelled, model, deleted)],
    }


def test_create_cancel_and_delete_each_leave_exactly_one_event(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    done = _create_cancel_delete(platform, tenant)
    events = _events(platform, tenant)
    assert [(e.action, e.resource, e.method) for e in events] == [
        ("jobs.create", done["job_id"], "POST"),
        ("jobs.cancel", done["job_id"], "DELETE"),
        ("models.create", done["model"], "POST"),
        ("models.delete", done["model"], "DELETE"),
    ]
    assert [e.request_id for e in events] == done["request_ids"]
    key_prefix = tenant.api_key.rsplit("_", 1)[0]
    for event in events:
        assert event.tenant_id == tenant.id
        assert event.principal == f"{tenant.name}-key"
        assert event.credential == key_prefix
        assert event.client == "127.0.0.1"
    assert [e.route for e in events] == [
        "/v1/jobs/training",
        "/v1/jobs/training/{job_id}",
        "/v1/models",
        "/v1/models/{name}",
    ]
    assert events[0].outcome == events[2].outcome == 201
    assert events[3].outcome == 204


def test_a_rejected_mutation_is_audited_with_its_outcome(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    response = platform.client(tenant).post("/v1/jobs/training", json={"name": "x"})
    assert response.status_code == 422
    events = _by_request(platform, response.headers["x-request-id"])
    assert [(e.action, e.outcome, e.principal) for e in events] == [
        ("jobs.create", 422, f"{tenant.name}-key")
    ]


def test_an_idempotent_replay_is_audited_once_more(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    client = platform.client(tenant)
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = client.post("/v1/jobs/training", json=spec(), headers=key)
    replay = client.post("/v1/jobs/training", json=spec(), headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.headers.get("idempotent-replayed") == "true"
    events = _events(platform, tenant)
    assert [(e.action, e.resource, e.principal) for e in events] == [
        ("jobs.create", first.json()["id"], f"{tenant.name}-key")
    ] * 2


def test_a_bad_key_leaves_one_auth_failed_event(platform: Platform) -> None:
    public = secrets.token_hex(4)
    secret_part = secrets.token_urlsafe(32).replace("_", "-")
    bad_key = f"mlp_{public}_{secret_part}"
    client = platform.client(**{"X-API-Key": bad_key})
    read = client.get("/v1/jobs/training")
    write = client.post("/v1/jobs/training", json=spec())
    assert read.status_code == write.status_code == 401
    for response, method in ((read, "GET"), (write, "POST")):
        events = _by_request(platform, response.headers["x-request-id"])
        assert len(events) == 1, events
        event = events[0]
        assert (event.action, event.outcome, event.method) == ("auth.failed", 401, method)
        assert event.tenant_id is None and event.principal is None
        assert event.credential == f"mlp_{public}"
        assert event.route == "/v1/jobs/training"
    assert secret_part not in _raw_table_text(platform)
    missing = platform.client().delete("/v1/models/anything")
    assert missing.status_code == 401
    [event] = _by_request(platform, missing.headers["x-request-id"])
    assert (event.action, event.credential, event.resource) == ("auth.failed", None, "anything")


def test_no_event_holds_an_env_var_value_or_a_key(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    _create_cancel_delete(platform, tenant)
    raw = _raw_table_text(platform)
    assert tenant.id in raw  # the table was read
    assert ENV_SECRET not in raw
    assert tenant.api_key not in raw
    assert tenant.api_key.rsplit("_", 1)[1] not in raw


def _mlp_audit(platform: Platform, *args: str) -> list[dict[str, Any]]:
    settings = platform.settings
    env = {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(settings.data_dir),
        "ML_PLATFORM_DATABASE_URL": settings.resolved_database_url,
        "ML_PLATFORM_CONFIG_DIR": str(settings.config_dir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli.main", "admin", "audit", "-o", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def test_mlp_admin_audit_lists_events_with_filters(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    done = _create_cancel_delete(platform, tenant)
    everything = _mlp_audit(platform, "--tenant", tenant.name)
    assert [e["action"] for e in everything] == [
        "models.delete",
        "models.create",
        "jobs.cancel",
        "jobs.create",
    ]
    assert [e["request_id"] for e in everything] == list(reversed(done["request_ids"]))
    assert {e["principal"] for e in everything} == {f"{tenant.name}-key"}
    assert everything[0]["occurred_at"].startswith(str(utcnow().year))
    only = _mlp_audit(platform, "--tenant", tenant.name, "--action", "jobs.create")
    assert [(e["action"], e["resource"]) for e in only] == [("jobs.create", done["job_id"])]
    jobs = _mlp_audit(platform, "--tenant", tenant.name, "--action", "jobs.*")
    assert [e["action"] for e in jobs] == ["jobs.cancel", "jobs.create"]
    assert len(_mlp_audit(platform, "--tenant", tenant.name, "--since", "1h")) == 4
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert _mlp_audit(platform, "--tenant", tenant.name, "--since", future) == []
    newest = _mlp_audit(platform, "--tenant", tenant.name, "--limit", "1")
    assert [e["action"] for e in newest] == ["models.delete"]
    by_id = _mlp_audit(platform, "--tenant", tenant.id, "--action", "models.create")
    assert [e["resource"] for e in by_id] == [done["model"]]


def test_mlp_admin_audit_refuses_a_bad_since(platform: Platform) -> None:
    settings = platform.settings
    result = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli.main", "admin", "audit", "--since", "soon"],
        env={**os.environ, "ML_PLATFORM_DATABASE_URL": settings.resolved_database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--since" in result.stderr and "Traceback" not in result.stderr


def test_events_older_than_the_retention_are_purged(platform: Platform) -> None:
    store = AuditStore(platform.db, retention=timedelta(days=1))
    tenant_id = "ten_audit_" + secrets.token_hex(4)
    for age in (timedelta(days=3), timedelta(hours=1)):
        store.record(
            AuditEvent(
                occurred_at=utcnow() - age,
                tenant_id=tenant_id,
                principal="p",
                credential=None,
                action="jobs.create",
                resource=str(age),
                method="POST",
                route="/v1/jobs/training",
                outcome=201,
                request_id=None,
                client=None,
            )
        )
    assert store.purge_expired() >= 1
    assert [e.resource for e in store.events(tenant_id=tenant_id)] == [str(timedelta(hours=1))]


@pytest.mark.parametrize(
    ("template", "name", "action"),
    [
        ("/v1/jobs/training", "create_training_job", "jobs.create"),
        ("/v1/jobs/training/{job_id}", "cancel_training_job", "jobs.cancel"),
        ("/v1/models/{name}/versions", "create_model_version", "models.versions.create"),
        ("/v1/models/{name}/aliases/{alias}", "set_model_alias", "models.aliases.set"),
        ("/v1/code-packages", "create_code_package", "code_packages.create"),
        ("/v1/data/{path:path}", "upload_data_file", "data.upload"),
        ("/v2/deployments/{name}", "update_deployment", "deployments.update"),
    ],
)
def test_actions_come_from_the_route_template_and_name(
    template: str, name: str, action: str
) -> None:
    assert action_of(template, name) == action


def test_a_jwt_caller_is_named_by_its_subject_and_a_bad_token_fails_once(
    platform: Platform,
) -> None:
    tenant = platform.new_tenant("audit")
    token = platform.context.auth.issue_token(tenant.name, "ci-bot", timedelta(hours=1))
    client = platform.client(Authorization=f"Bearer {token}")
    name = f"m-{secrets.token_hex(3)}"
    created = client.post("/v1/models", json={"name": name, "framework": "sklearn"})
    assert created.status_code == 201, created.text
    [event] = _by_request(platform, created.headers["x-request-id"])
    assert (event.tenant_id, event.principal, event.credential, event.action) == (
        tenant.id,
        "ci-bot",
        "jwt",
        "models.create",
    )
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    rejected = platform.client(Authorization=f"Bearer {forged}").delete(f"/v1/models/{name}")
    assert rejected.status_code == 401
    [failed] = _by_request(platform, rejected.headers["x-request-id"])
    assert (failed.action, failed.credential, failed.principal) == ("auth.failed", "jwt", None)
    raw = _raw_table_text(platform)
    assert token not in raw and forged not in raw
    assert token.split(".")[2] not in raw


def test_a_revoked_key_fails_authentication_with_an_event(platform: Platform) -> None:
    tenant = platform.new_tenant("audit")
    platform.context.auth.revoke_api_key(tenant.api_key)
    response = platform.client(tenant).post("/v1/jobs/training", json=spec())
    assert response.status_code == 401
    [event] = _by_request(platform, response.headers["x-request-id"])
    assert (event.action, event.credential, event.tenant_id) == (
        "auth.failed",
        tenant.api_key.rsplit("_", 1)[0],
        None,
    )
    assert _events(platform, tenant) == []  # nothing was done in the tenant's name
