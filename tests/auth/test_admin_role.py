"""The administrator principal: an admin API key or a JWT with ``role=admin`` passes
``require_admin``; a user's credential gets 403 problem ``ADMIN_REQUIRED``; the target tenant
is named by name or id in the path. On both stores, through a real server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter

from ml_platform.api.deps import AdminDep, TargetTenantDep
from ml_platform.server.app import create_app
from ml_platform.server.context import build_context
from tests.conftest import BACKENDS, TEST_JWT_SECRET, ServerThread, make_settings

probe = APIRouter()


@probe.get("/v1/admin/tenants/{tenant}/probe")
async def admin_probe(admin: AdminDep, target: TargetTenantDep) -> dict[str, Any]:
    return {"admin": admin.name, "admin_tenant": admin.tenant_id, "target": target.id}


@dataclass
class World:
    base_url: str
    context: Any

    def tenant(self, *, admin: bool = False) -> tuple[str, str, str]:
        name = f"adm-{secrets.token_hex(4)}"
        record = self.context.auth.create_tenant(name)
        key = self.context.auth.create_api_key(name, f"{name}-key", admin=admin)
        return record.id, name, key.plaintext

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.base_url + path, headers=headers, timeout=30)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: Any,
) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp(f"admin-{request.param}")
    settings = make_settings(data_dir, database_url_factory(request.param))
    context = build_context(settings)
    context.db.upgrade()
    app = create_app(settings, context)
    app.include_router(probe)
    server = ServerThread(app)
    yield World(server.start(), context)
    server.stop()
    context.db.dispose()


def test_an_admin_key_acts_on_any_tenant_by_name_or_id(world: World) -> None:
    admin_tenant, _, admin_key = world.tenant(admin=True)
    target_id, target_name, _ = world.tenant()
    for ref in (target_name, target_id):
        response = world.get(f"/v1/admin/tenants/{ref}/probe", **{"X-API-Key": admin_key})
        assert response.status_code == 200, response.text
        assert response.json()["target"] == target_id
        assert response.json()["admin_tenant"] == admin_tenant


def test_a_user_key_is_refused_with_admin_required(world: World) -> None:
    _, own_name, user_key = world.tenant()
    response = world.get(f"/v1/admin/tenants/{own_name}/probe", **{"X-API-Key": user_key})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "ADMIN_REQUIRED"
    assert body["status"] == 403
    assert body["type"].endswith("/admin-required")
    assert "administrators" in body["detail"] and "--admin" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_no_credentials_is_401_not_403(world: World) -> None:
    response = world.get("/v1/admin/tenants/anything/probe")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"


def test_an_unknown_target_tenant_is_404_naming_it(world: World) -> None:
    _, _, admin_key = world.tenant(admin=True)
    response = world.get("/v1/admin/tenants/no-such-tenant/probe", **{"X-API-Key": admin_key})
    assert response.status_code == 404
    assert "'no-such-tenant'" in response.json()["detail"]


def test_jwt_role_claim(world: World) -> None:
    _, name, _ = world.tenant()
    auth = world.context.auth
    admin_token = auth.issue_token(name, "ops", timedelta(minutes=5), admin=True)
    user_token = auth.issue_token(name, "dev", timedelta(minutes=5))
    assert jwt.decode(admin_token, options={"verify_signature": False})["role"] == "admin"
    path = f"/v1/admin/tenants/{name}/probe"
    admin = world.get(path, Authorization=f"Bearer {admin_token}")
    assert admin.status_code == 200 and admin.json()["admin"] == "ops"
    user = world.get(path, Authorization=f"Bearer {user_token}")
    assert user.status_code == 403 and user.json()["code"] == "ADMIN_REQUIRED"
    # a role the platform does not know is an invalid token, not a silent downgrade
    tenant_id = auth.tenant(name).id
    forged = jwt.encode(
        {"sub": "x", "tenant_id": tenant_id, "iat": 0, "exp": 2**31, "role": "root"},
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    refused = world.get(path, Authorization=f"Bearer {forged}")
    assert refused.status_code == 401
    assert "'role' claim" in refused.json()["detail"]


def test_the_admin_flag_is_stored_on_the_key(world: World) -> None:
    _, name, _ = world.tenant(admin=True)
    keys = world.context.auth.api_keys(name)
    assert [k.is_admin for k in keys] == [True]
