"""Per-worker cache of authentication results so the hot path does no store lookup."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ml_platform.core.errors import Unauthenticated
from ml_platform.serving.models import Principal

ResolveFn = Callable[[str | None, str | None], Awaitable[Principal]]

_NEGATIVE_TTL = 1.0
_MAX_ENTRIES = 10_000


class AuthCache:
    def __init__(self, resolve: ResolveFn, ttl_seconds: float) -> None:
        self._resolve = resolve
        self._ttl = ttl_seconds
        self._entries: dict[tuple[str | None, str | None], tuple[float, Principal | None, str]] = {}

    async def principal(self, api_key: str | None, bearer: str | None) -> Principal:
        if not api_key and not bearer:
            raise Unauthenticated(
                "missing credentials: send an x-api-key or authorization: Bearer <token> "
                "header (gRPC: metadata)"
            )
        key = (api_key, bearer)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            if hit[1] is None:
                raise Unauthenticated(hit[2])
            return hit[1]
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        try:
            principal = await self._resolve(api_key, bearer)
        except Unauthenticated as exc:
            self._entries[key] = (now + _NEGATIVE_TTL, None, exc.message)
            raise
        if self._ttl > 0:
            self._entries[key] = (now + self._ttl, principal, "")
        return principal
