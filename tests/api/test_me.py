"""GET /v1/me over a live server: who the API key or JWT belongs to, and the data area."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ml_platform.client._config import read_credentials, resolve_connection
from ml_platform.server.bootstrap import (
    ensure_default_tenant,
    local_grpc_target,
    write_credentials,
)
from tests.conftest import Platform, Tenant


def test_me_with_an_api_key(platform: Platform, tenant: Tenant) -> None:
    response = platform.client(tenant).get("/v1/me")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "principal": f"{tenant.name}-key",
        "auth_method": "api_key",
        "tenant_id": tenant.id,
        "tenant_name": tenant.name,
        "data_prefix": "data/",
    }


def test_me_with_a_jwt(platform: Platform, tenant: Tenant) -> None:
    token = platform.context.auth.issue_token(tenant.name, "ci-bot", timedelta(minutes=1))
    response = platform.client(Authorization=f"Bearer {token}").get("/v1/me")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["principal"] == "ci-bot"
    assert body["auth_method"] == "jwt"
    assert (body["tenant_id"], body["tenant_name"]) == (tenant.id, tenant.name)


def test_me_tells_tenants_apart(platform: Platform) -> None:
    one, two = platform.new_tenant("one"), platform.new_tenant("two")
    assert platform.client(one).get("/v1/me").json()["tenant_id"] == one.id
    assert platform.client(two).get("/v1/me").json()["tenant_id"] == two.id


def test_me_without_or_with_bad_credentials_is_401(platform: Platform) -> None:
    anonymous = platform.client().get("/v1/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert platform.client(**{"X-API-Key": "mlp_nope_nope"}).get("/v1/me").status_code == 401


# -- the credentials file the first start writes ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "target"),
    [
        ("127.0.0.1", 50051, "127.0.0.1:50051"),
        ("0.0.0.0", 6000, "127.0.0.1:6000"),  # a wildcard bind is dialled on loopback
        ("::", 6000, "127.0.0.1:6000"),
        ("::1", 6000, "[::1]:6000"),
        ("grpc.internal", 443, "grpc.internal:443"),
    ],
)
def test_local_grpc_target(host: str, port: int, target: str) -> None:
    assert local_grpc_target(host, port) == target


def test_first_start_writes_grpc_target_the_sdk_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a platform with no tenant yet: its own fresh database
    from ml_platform.auth.service import AuthService
    from ml_platform.auth.tokens import TokenCodec
    from ml_platform.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.upgrade()
    try:
        auth = AuthService(db, TokenCodec("x" * 32))
        credentials = tmp_path / "config" / "credentials.json"
        created = ensure_default_tenant(
            auth, credentials, "http://127.0.0.1:8123", "127.0.0.1:6123"
        )
        assert created is not None
        stored = json.loads(credentials.read_text())
        assert stored["grpc_target"] == "127.0.0.1:6123"
        assert stored["api_key"] == created.api_key
        assert credentials.stat().st_mode & 0o777 == 0o600
        # the SDK's Client() finds URL, key and gRPC target in that file
        monkeypatch.setenv("ML_PLATFORM_CONFIG_DIR", str(credentials.parent))
        for name in ("ML_PLATFORM_URL", "ML_PLATFORM_API_KEY", "ML_PLATFORM_GRPC_TARGET"):
            monkeypatch.delenv(name, raising=False)
        assert read_credentials() == stored
        connection = resolve_connection(None, None, None)
        assert connection.grpc_target == "127.0.0.1:6123"
        assert connection.base_url == "http://127.0.0.1:8123"
        assert ensure_default_tenant(auth, credentials, "http://x", "y:1") is None  # set up
    finally:
        db.dispose()


def test_credentials_without_grpc_target_keep_the_old_shape(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    write_credentials(path, base_url="http://127.0.0.1:1", api_key="mlp_x", tenant="t")
    assert json.loads(path.read_text()) == {
        "base_url": "http://127.0.0.1:1",
        "api_key": "mlp_x",
        "tenant": "t",
    }
