"""The serving worker's memory of callers: keyed by digests (no secret held as a key), a
refusal remembered for a second, TTL 0 resolving every call."""

from __future__ import annotations

import asyncio

import pytest

from ml_platform.core.errors import Unauthenticated
from ml_platform.serving.models import Principal
from ml_platform.serving.plane import auth_cache
from ml_platform.serving.plane.auth_cache import AuthCache

KEY = "mlp_" + "s3cret" * 6


def test_no_credential_is_held_as_a_key_and_refusals_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str | None] = []

    async def resolve(api_key: str | None, bearer: str | None) -> Principal:
        calls.append(api_key or bearer)
        if api_key == KEY:
            return Principal("t1", "alice")
        raise Unauthenticated("unknown API key")

    async def scenario() -> AuthCache:
        cache = AuthCache(resolve, ttl_seconds=60)
        assert (await cache.principal(KEY, None)).name == "alice"
        assert (await cache.principal(KEY, None)).name == "alice"
        for _ in range(2):
            with pytest.raises(Unauthenticated, match="unknown API key"):
                await cache.principal(KEY + "x", None)
        monkeypatch.setattr(auth_cache, "_NEGATIVE_TTL", 0.0)  # the next refusal lasts no time
        with pytest.raises(Unauthenticated):
            await cache.principal(None, "bad-token")
        with pytest.raises(Unauthenticated):
            await cache.principal(None, "bad-token")
        return cache

    cache = asyncio.run(scenario())
    assert calls == [KEY, KEY + "x", "bad-token", "bad-token"]
    held = repr(vars(cache)) + repr(vars(cache._known))
    assert KEY not in held and "s3cret" not in held and "bad-token" not in held


def test_ttl_zero_resolves_every_call() -> None:
    calls = 0

    async def resolve(api_key: str | None, bearer: str | None) -> Principal:
        nonlocal calls
        calls += 1
        return Principal("t1", "alice")

    async def scenario() -> None:
        cache = AuthCache(resolve, ttl_seconds=0)
        for _ in range(3):
            await cache.principal(KEY, None)

    asyncio.run(scenario())
    assert calls == 3
