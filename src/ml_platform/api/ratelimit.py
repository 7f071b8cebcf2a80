"""Rate limits on the REST control plane (API-GUIDE rule 15).

``enforce_rate_limit`` runs right after authentication (``api.deps.get_principal``), so only
authenticated routes are limited and each request is counted once, against its tenant's and
its credential's ``control`` budgets. Its ``Decision`` is kept in the request scope; the
``RateLimitHeadersMiddleware`` then writes the IETF fields on every response of a limited
route, the 429/503 problems (rendered by the one problem renderer) included::

    RateLimit-Policy: "control";q=600;w=60
    RateLimit: "control";r=12;t=8
    Retry-After: 8            (429 over budget; 503 when Redis is down and failing closed)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.auth.principal import Principal
from ml_platform.config import Settings
from ml_platform.governance.ratelimit import Decision, Plane, RateLimiter, build_rate_limiter

STATE_KEY = "ratelimit"


def decision_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in decision.http_headers()]


class RateLimitHeadersMiddleware:
    """Adds the rate-limit fields of the request's ``Decision`` (if any) to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.get(STATE_KEY)
                if isinstance(decision, Decision):
                    names = {b"ratelimit-policy", b"ratelimit", b"retry-after"}
                    headers = [h for h in message.get("headers", []) if h[0] not in names]
                    message["headers"] = headers + decision_headers(decision)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def credential_id(principal: Principal) -> str:
    return f"{principal.kind.value}:{principal.name}"


async def enforce_rate_limit(request: Request, principal: Principal) -> None:
    """Count this request; RateLimited (429) or RateLimitUnavailable (503) when refused."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    decision = await limiter.hit(Plane.CONTROL, principal.tenant_id, credential_id(principal))
    request.state.ratelimit = decision
    decision.raise_if_rejected()


def install_rate_limits(app: FastAPI, settings: Settings) -> RateLimiter:
    """Give ``app`` its limiter and the header middleware (add it inside the request-id one)."""
    limiter = build_rate_limiter(settings)
    app.state.rate_limiter = limiter
    app.add_middleware(RateLimitHeadersMiddleware)
    return limiter
