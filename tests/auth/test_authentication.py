"""API keys and JWTs against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from ml_platform.auth.service import AuthService
from tests.api.job_specs import spec
from tests.conftest import TEST_JWT_SECRET, Platform, Tenant


def _token(claims: dict[str, Any], secret: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _claims(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "alice@example.com",
        "tenant_id": tenant.id,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _assert_401(response: Any, detail_part: str) -> None:
    assert response.status_code == 401, response.text
    assert "Bearer" in response.headers["www-authenticate"]
    assert response.headers["content-type"] == "application/problem+json"
    assert detail_part in response.json()["detail"]


def test_valid_jwt_acts_for_its_tenant_and_sub_is_created_by(
    platform: Platform, tenant: Tenant
) -> None:
    client = platform.client(Authorization=f"Bearer {_token(_claims(tenant))}")
    job = client.post("/v1/jobs/training", json=spec())
    assert job.status_code == 201
    assert job.json()["created_by"] == "alice@example.com"
    assert job.json()["tenant_id"] == tenant.id


def test_issued_token_is_accepted(platform: Platform, tenant: Tenant) -> None:
    token = platform.context.auth.issue_token(tenant.name, "ci-bot", timedelta(minutes=1))
    client = platform.client(Authorization=f"Bearer {token}")
    assert client.get("/v1/jobs/training").status_code == 200


@pytest.mark.parametrize(
    ("claims_change", "secret", "detail"),
    [
        ({"exp": datetime.now(UTC) - timedelta(seconds=5)}, TEST_JWT_SECRET, "expired"),
        ({}, "another-secret-entirely-" + "y" * 20, "invalid token"),
        ({"tenant_id": None}, TEST_JWT_SECRET, "tenant_id"),
        ({"sub": None}, TEST_JWT_SECRET, "sub"),
        ({"exp": None}, TEST_JWT_SECRET, "exp"),
        ({"tenant_id": "ten_doesnotexist"}, TEST_JWT_SECRET, "unknown tenant"),
    ],
    ids=["expired", "wrong-signature", "no-tenant", "no-sub", "no-exp", "unknown-tenant"],
)
def test_bad_tokens_are_401(
    platform: Platform, tenant: Tenant, claims_change: dict[str, Any], secret: str, detail: str
) -> None:
    token = _token(_claims(tenant, **claims_change), secret=secret)
    client = platform.client(Authorization=f"Bearer {token}")
    _assert_401(client.get("/v1/jobs/training"), detail)


def test_alg_none_and_garbage_tokens_are_401(platform: Platform, tenant: Tenant) -> None:
    unsigned = jwt.encode(_claims(tenant), key=None, algorithm="none")  # type: ignore[arg-type]
    for token in (unsigned, "garbage", "a.b.c"):
        client = platform.client(Authorization=f"Bearer {token}")
        _assert_401(client.get("/v1/jobs/training"), "invalid token")


def test_missing_and_invalid_keys_are_401(platform: Platform) -> None:
    _assert_401(platform.client().get("/v1/jobs/training"), "missing credentials")
    _assert_401(
        platform.client(**{"X-API-Key": "mlp_00000000_notarealkeynotarealkey"}).get(
            "/v1/jobs/training"
        ),
        "invalid API key",
    )
    _assert_401(platform.client(**{"X-API-Key": "x"}).get("/v1/jobs/training"), "invalid API key")


def test_revoked_key_is_401(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    assert client.get("/v1/jobs/training").status_code == 200
    platform.context.auth.revoke_api_key(tenant.api_key)
    _assert_401(client.get("/v1/jobs/training"), "revoked")


def test_keys_are_stored_only_as_hashes(platform: Platform, tenant: Tenant) -> None:
    from sqlalchemy import text

    with platform.db.read() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
    dump = repr(rows)
    assert tenant.api_key not in dump
    assert tenant.api_key.split("_")[-1] not in dump
    assert tenant.api_key.startswith("mlp_")


def test_revoke_by_id(platform: Platform) -> None:
    auth: AuthService = platform.context.auth
    tenant = platform.new_tenant("rev")
    key = auth.create_api_key(tenant.name, "second")
    auth.revoke_api_key(key.record.id)
    client = platform.client(**{"X-API-Key": key.plaintext})
    _assert_401(client.get("/v1/jobs/training"), "revoked")
    assert platform.client(tenant).get("/v1/jobs/training").status_code == 200
