"""``GET /v1/admin/audit`` on both stores: administrators only, the filters of
``mlp admin audit`` (tenant, principal, action, outcome, since/until) through the same store
query, and cursor pages that visit every event exactly once while new events are written."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ml_platform.store.audit import AuditStore
from ml_platform.store.base import utcnow
from tests.api.job_specs import spec
from tests.conftest import BACKENDS, Platform, Tenant, start_platform


def _admin(platform: Platform) -> Tenant:
    name = f"ops-{secrets.token_hex(4)}"
    tenant = platform.context.auth.create_tenant(name)
    key = platform.context.auth.create_api_key(name, f"{name}-admin", admin=True)
    return Tenant(id=tenant.id, name=name, api_key=key.plaintext)


def _audit(platform: Platform, admin: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = platform.client(admin).get("/v1/admin/audit", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_page_token"] is None
    return list(body["events"])


def _activity(platform: Platform, tenant: Tenant) -> dict[str, str]:
    """Two creates, one cancel, one rejected create (422) by the tenant's key."""
    client = platform.client(tenant)
    first = client.post("/v1/jobs/training", json=spec())
    second = client.post("/v1/jobs/training", json=spec())
    assert first.status_code == second.status_code == 201
    cancelled = client.delete(f"/v1/jobs/training/{first.json()['id']}")
    assert cancelled.status_code in (202, 204)
    rejected = client.post("/v1/jobs/training", json={"name": "x"})
    assert rejected.status_code == 422
    return {"first": first.json()["id"], "second": second.json()["id"]}


def test_non_admins_get_403_and_nobody_401(platform: Platform, tenant: Tenant) -> None:
    denied = platform.client(tenant).get("/v1/admin/audit")
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["code"] == "ADMIN_REQUIRED"
    assert platform.client().get("/v1/admin/audit").status_code == 401


def test_filters_match_the_store_query(platform: Platform) -> None:
    tenant = platform.new_tenant("aud")
    admin = _admin(platform)
    ids = _activity(platform, tenant)
    key_name = f"{tenant.name}-key"

    events = _audit(platform, admin, tenant=tenant.name)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("jobs.create", 422),
        ("jobs.cancel", events[1]["outcome"]),
        ("jobs.create", 201),
        ("jobs.create", 201),
    ]
    assert {e["tenant_id"] for e in events} == {tenant.id}
    assert {e["principal"] for e in events} == {key_name}
    assert events[2]["resource"] == ids["second"] and events[3]["resource"] == ids["first"]
    # the same rows, in the same order, as the one store query (what mlp admin audit prints)
    stored = AuditStore(platform.db).events(tenant_id=tenant.id)
    assert [e["id"] for e in events] == [e.id for e in stored]
    assert _audit(platform, admin, tenant=tenant.id) == events

    assert [e["resource"] for e in _audit(platform, admin, tenant=tenant.name, outcome=201)] == [
        ids["second"],
        ids["first"],
    ]
    assert [e["action"] for e in _audit(platform, admin, tenant=tenant.name, action="jobs.*")] == [
        "jobs.create",
        "jobs.cancel",
        "jobs.create",
        "jobs.create",
    ]
    cancels = _audit(platform, admin, tenant=tenant.name, action="jobs.cancel")
    assert [e["resource"] for e in cancels] == [ids["first"]]
    assert len(_audit(platform, admin, principal=key_name)) == 4
    assert _audit(platform, admin, principal=key_name + "-other") == []

    oldest, newest = events[-1]["occurred_at"], events[0]["occurred_at"]
    assert len(_audit(platform, admin, tenant=tenant.name, since=oldest)) == 4
    before_newest = _audit(platform, admin, tenant=tenant.name, until=newest)
    assert all(e["occurred_at"] < newest for e in before_newest)
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert _audit(platform, admin, tenant=tenant.name, since=later) == []


def test_bad_filters_are_clear_4xx(platform: Platform) -> None:
    admin = _admin(platform)
    client = platform.client(admin)
    for params, field in [
        ({"outcome": 42}, "outcome"),
        ({"action": "jobs;drop"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"page_size": 0}, "page_size"),
        ({"tenant": "bad name"}, "tenant"),
    ]:
        answer = client.get("/v1/admin/audit", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert any(e["path"].endswith(field) for e in answer.json()["errors"]), answer.text
    now = utcnow()
    backwards = client.get(
        "/v1/admin/audit",
        params={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
    )
    assert backwards.status_code == 400 and "until" in backwards.json()["detail"]
    forged = client.get("/v1/admin/audit", params={"page_token": "not-a-token"})
    assert forged.status_code == 400 and forged.json()["errors"][0]["path"] == "query.page_token"


def test_cursor_pages_visit_every_event_once_while_events_are_written(
    platform: Platform,
) -> None:
    tenant = platform.new_tenant("aud")
    admin = _admin(platform)
    client = platform.client(tenant)
    for _ in range(5):
        assert client.post("/v1/jobs/training", json=spec()).status_code == 201
    expected = [e.id for e in AuditStore(platform.db).events(tenant_id=tenant.id)]
    assert len(expected) == 5

    seen: list[int] = []
    params: dict[str, Any] = {"tenant": tenant.name, "page_size": 2}
    reader = platform.client(admin)
    pages = 0
    while True:
        answer = reader.get("/v1/admin/audit", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [e["id"] for e in body["events"]]
        pages += 1
        # meanwhile the tenant keeps writing: newer events never shift the pages
        assert client.post("/v1/jobs/training", json=spec()).status_code == 201
        token = body["next_page_token"]
        if token is None:
            assert 'rel="next"' not in answer.headers.get("link", "")
            break
        assert (
            f"page_token={token}" in answer.headers["link"]
            and 'rel="next"' in answer.headers["link"]
        )
        params = {**params, "page_token": token}
        # the token is tied to its filters
        other = reader.get("/v1/admin/audit", params={**params, "action": "jobs.cancel"})
        assert other.status_code == 400
        assert other.json()["errors"][0]["path"] == "query.page_token"
    assert seen == expected and pages == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_buffered_delivery_still_leaves_exactly_one_event_per_request(
    backend: str, tmp_path: Path, database_url_factory: Any
) -> None:
    """``ML_PLATFORM_AUDIT_DELIVERY=buffered``: responses do not wait for the commit, and the
    audit route, which drains this process's writer first, still sees each request once."""
    platform, server = start_platform(
        backend, tmp_path, database_url_factory(backend), audit_delivery="buffered"
    )
    try:
        tenant = platform.new_tenant("buf")
        admin = _admin(platform)
        ids = _activity(platform, tenant)
        wrong = platform.client().get("/v1/me", headers={"X-API-Key": "mlp_wrong"})
        assert wrong.status_code == 401
        events = _audit(platform, admin, tenant=tenant.name)
        assert [(e["action"], e["outcome"], e["resource"]) for e in events] == [
            ("jobs.create", 422, None),
            ("jobs.cancel", events[1]["outcome"], ids["first"]),
            ("jobs.create", 201, ids["second"]),
            ("jobs.create", 201, ids["first"]),
        ]
        assert [e["action"] for e in _audit(platform, admin, action="auth.failed")] == [
            "auth.failed"
        ]
    finally:
        platform.close()
        server.stop()
        platform.db.dispose()
