"""The ``BearerAuth`` scheme: ``Authorization: Bearer <API key or JWT>``, scheme word optional.

The seed's generated-client line ``config.api_key['BearerAuth'] = token`` makes an OpenAPI
Generator client send ``Authorization: <token>`` (no ``Bearer`` unless a prefix is set), so the
bare form must authenticate too; idempotency and audit read the header the same way.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from ml_platform.store.audit import AuditStore
from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant

JOBS = "/v1/jobs/training"


@pytest.mark.parametrize("form", ["Bearer {}", "bearer {}", "{}"])
def test_an_api_key_in_authorization_acts_for_its_tenant(
    platform: Platform, tenant: Tenant, form: str
) -> None:
    response = platform.client(Authorization=form.format(tenant.api_key)).get("/v1/me")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["tenant_id"], body["auth_method"]) == (tenant.id, "api_key")


def test_a_bare_jwt_in_authorization_acts_for_its_tenant(
    platform: Platform, tenant: Tenant
) -> None:
    token = platform.context.auth.issue_token(tenant.name, "gen-client", timedelta(minutes=1))
    response = platform.client(Authorization=token).get("/v1/me")
    assert response.status_code == 200, response.text
    assert (response.json()["tenant_id"], response.json()["auth_method"]) == (tenant.id, "jwt")


@pytest.mark.parametrize(
    "authorization",
    [
        # a well-formed key no tenant holds (fixed: xdist workers must collect the same ids)
        "Bearer mlp_0badc0de_" + "Q" * 43,
        "Basic Zm9vOmJhcg==",  # another scheme: no credentials
        "Bearer",
        "Bearer mlp_short",
    ],
)
def test_bad_authorization_is_a_401_problem(platform: Platform, authorization: str) -> None:
    response = platform.client(Authorization=authorization).get("/v1/me")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Bearer" in response.headers["www-authenticate"]


def test_bearer_api_keys_take_part_in_idempotency_and_audit(
    platform: Platform, tenant: Tenant
) -> None:
    client = platform.client(Authorization=f"Bearer {tenant.api_key}")
    key = secrets.token_hex(8)
    first = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    second = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    request_id = first.headers["x-request-id"]
    [event] = [e for e in AuditStore(platform.db).events(limit=1000) if e.request_id == request_id]
    assert (event.tenant_id, event.action) == (tenant.id, "jobs.create")
    assert event.credential == tenant.api_key.rsplit("_", 1)[0]
