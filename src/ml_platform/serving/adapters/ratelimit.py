"""The data plane's request budgets: every authenticated gRPC or V2 REST call is counted.

``RateLimitedAuthCache`` is the serving node's ``AuthCache`` with one step added: once the
caller is known (cached or resolved), the request is counted against its tenant's (and
credential's) ``data`` budget. Over it, ``RateLimited`` travels as RESOURCE_EXHAUSTED with a
``RetryInfo`` detail (gRPC) or a 429 problem with ``Retry-After`` (V2 REST).

Each worker process has its own limiter: in memory every worker keeps its own budget, with
``redis_url`` set all workers of all nodes share one.
"""

from __future__ import annotations

from ml_platform.governance.ratelimit import Plane, RateLimiter
from ml_platform.serving.models import Principal
from ml_platform.serving.plane.auth_cache import AuthCache, ResolveFn


class RateLimitedAuthCache(AuthCache):
    def __init__(self, resolve: ResolveFn, ttl_seconds: float, limiter: RateLimiter) -> None:
        super().__init__(resolve, ttl_seconds)
        self._limiter = limiter

    async def principal(self, api_key: str | None, bearer: str | None) -> Principal:
        principal = await super().principal(api_key, bearer)
        credential = ("api_key:" if api_key else "jwt:") + principal.name
        decision = await self._limiter.hit(Plane.DATA, principal.tenant_id, credential)
        decision.raise_if_rejected()
        return principal
