"""The control plane's memory of checked credentials (``auth.principal_cache``).

Against the real server and store (SQLite and PostgreSQL): a remembered key costs no store
read; a key revoked through this server fails at once; revoked elsewhere it is trusted at most
the TTL (and not at all with the memory off); failures are never remembered. The TTL arithmetic
itself runs on an injected clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from ml_platform.auth.principal import CredentialKind, Principal
from ml_platform.auth.principal_cache import MAX_ENTRIES, PrincipalCache, credential_digest
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.store.db import Database
from tests.conftest import BACKENDS, TEST_JWT_SECRET, Platform, start_platform

ALICE = Principal(tenant_id="ten_a", name="alice", kind=CredentialKind.API_KEY)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl_and_no_longer() -> None:
    clock = Clock()
    cache = PrincipalCache(2.0, clock=clock)
    cache.put("key:a", ALICE, generation=cache.generation)
    clock.now += 1.999
    assert cache.get("key:a") == ALICE
    clock.now += 0.001
    assert cache.get("key:a") is None


def test_a_token_is_never_remembered_past_its_own_expiry() -> None:
    clock = Clock()
    cache = PrincipalCache(60.0, clock=clock)
    expires = datetime.fromtimestamp(clock.now + 5, UTC)
    cache.put("jwt:t", ALICE, generation=cache.generation, not_after=expires)
    clock.now += 4.9
    assert cache.get("jwt:t") == ALICE
    clock.now += 0.1
    assert cache.get("jwt:t") is None


def test_a_read_that_began_before_a_revocation_is_not_remembered() -> None:
    cache = PrincipalCache(60.0)
    before = cache.generation
    cache.clear()  # a revocation committed while that read was in flight
    cache.put("key:a", ALICE, generation=before)
    assert cache.get("key:a") is None
    cache.put("key:a", ALICE, generation=cache.generation)
    assert cache.get("key:a") == ALICE


def test_ttl_zero_remembers_nothing_and_the_memory_is_bounded() -> None:
    off = PrincipalCache(0.0)
    off.put("key:a", ALICE, generation=off.generation)
    assert off.get("key:a") is None
    cache = PrincipalCache(60.0)
    for index in range(MAX_ENTRIES + 10):
        cache.put(f"key:{index}", ALICE, generation=cache.generation)
    assert len(cache._entries) <= MAX_ENTRIES


def test_digests_never_hold_the_credential() -> None:
    key = "mlp_1a2b3c4d_" + "s" * 43
    digest = credential_digest("api_key", key)
    assert key not in digest and "s" * 10 not in digest
    assert digest != credential_digest("jwt", key)


# -- against the real server ---------------------------------------------------------------


class KeyReads:
    """Counts the store reads of ``api_keys`` (what authentication does on a miss)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._engine = db.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            self.count += 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def key_reads(platform: Platform) -> Iterator[KeyReads]:
    reads = KeyReads(platform.db)
    yield reads
    reads.close()


def test_a_remembered_key_is_answered_without_reading_the_store(
    platform: Platform, key_reads: KeyReads
) -> None:
    assert platform.settings.auth_cache_seconds > 0  # the default is on
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    assert client.get("/v1/jobs/training").status_code == 200
    first = key_reads.count
    assert first >= 1
    for _ in range(5):
        assert client.get("/v1/jobs/training").status_code == 200
    assert key_reads.count == first


def test_failures_are_never_remembered(platform: Platform, key_reads: KeyReads) -> None:
    tenant = platform.new_tenant()
    wrong = tenant.api_key[:-4] + ("aaaa" if not tenant.api_key.endswith("aaaa") else "bbbb")
    client = platform.client(**{"X-API-Key": wrong})
    for attempt in range(1, 4):
        response = client.get("/v1/jobs/training")
        assert response.status_code == 401, response.text
        assert key_reads.count >= attempt  # every wrong guess costs its own read
    # and the right key still works (nothing about the wrong one was kept)
    assert platform.client(tenant).get("/v1/jobs/training").status_code == 200


def test_a_key_revoked_through_this_server_fails_at_once(platform: Platform) -> None:
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    assert client.get("/v1/jobs/training").status_code == 200  # now remembered
    platform.context.auth.revoke_api_key(tenant.api_key)
    response = client.get("/v1/jobs/training")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.mark.parametrize(("ttl", "trusted_after_revocation"), [(600.0, True), (0.0, False)])
def test_a_key_revoked_on_another_replica_is_trusted_at_most_the_ttl(
    backend: str,
    tmp_path: Path,
    database_url_factory: Any,
    ttl: float,
    trusted_after_revocation: bool,
) -> None:
    running, server = start_platform(
        backend, tmp_path, database_url_factory(backend), auth_cache_seconds=ttl
    )
    try:
        tenant = running.new_tenant()
        client = running.client(tenant)
        assert client.get("/v1/jobs/training").status_code == 200
        # another replica (its own AuthService on the same store) revokes the key
        elsewhere = AuthService(
            Database(running.settings.resolved_database_url), TokenCodec(TEST_JWT_SECRET)
        )
        elsewhere.revoke_api_key(tenant.api_key)
        status = client.get("/v1/jobs/training").status_code
        assert status == (200 if trusted_after_revocation else 401)
        # a JWT of the same tenant is remembered too, and still names the right tenant
        token = running.context.auth.issue_token(tenant.name, "bot", timedelta(minutes=1))
        bearer = running.client(Authorization=f"Bearer {token}")
        for _ in range(2):
            me = bearer.get("/v1/me")
            assert me.status_code == 200 and me.json()["tenant_id"] == tenant.id
    finally:
        running.close()
        server.stop()
        running.db.dispose()
