"""Per-worker memory of authentication results so the hot path does no store lookup.

Callers the store accepted are remembered for ``ttl_seconds`` in an ``auth.PrincipalCache``
(the control plane's memory, keyed by a digest of the credentials, never by the secrets
themselves). Unlike the control plane, a refusal is remembered too, for ``_NEGATIVE_TTL``: a
data-plane client retrying a bad key in a tight loop would otherwise cost a round trip to the
supervisor per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ml_platform.auth.principal_cache import MAX_ENTRIES, PrincipalCache, credential_digest
from ml_platform.core.errors import Unauthenticated
from ml_platform.serving.models import Principal

ResolveFn = Callable[[str | None, str | None], Awaitable[Principal]]

_NEGATIVE_TTL = 1.0


def _digest(api_key: str | None, bearer: str | None) -> str:
    # both may be sent; the pair is what the resolver judged
    return credential_digest("data", f"{api_key or ''}\n{bearer or ''}")


class AuthCache:
    def __init__(self, resolve: ResolveFn, ttl_seconds: float) -> None:
        self._resolve = resolve
        self._known: PrincipalCache[Principal] = PrincipalCache(ttl_seconds)
        self._refused: dict[str, tuple[float, str]] = {}  # digest -> (until, the refusal)

    async def principal(self, api_key: str | None, bearer: str | None) -> Principal:
        if not api_key and not bearer:
            raise Unauthenticated(
                "missing credentials: send an x-api-key or authorization: Bearer <token> "
                "header (gRPC: metadata)"
            )
        digest = _digest(api_key, bearer)
        known = self._known.get(digest)
        if known is not None:
            return known
        now = time.monotonic()
        refused = self._refused.get(digest)
        if refused is not None:
            if refused[0] > now:
                raise Unauthenticated(refused[1])
            del self._refused[digest]
        generation = self._known.generation
        try:
            principal = await self._resolve(api_key, bearer)
        except Unauthenticated as exc:
            if len(self._refused) >= MAX_ENTRIES:
                self._refused.clear()
            self._refused[digest] = (now + _NEGATIVE_TTL, exc.message)
            raise
        self._known.put(digest, principal, generation=generation)
        return principal
