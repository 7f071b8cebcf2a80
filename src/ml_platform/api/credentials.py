"""Reading the bearer credential of a request's ``Authorization`` header (one parser for all).

``Authorization: Bearer <token>`` carries an API key (``mlp_...``) or a JWT. A bare
``Authorization: <token>`` (no scheme word) is accepted too: it is what an OpenAPI Generator
client sends for the ``BearerAuth`` scheme (``config.api_key['BearerAuth'] = token``) unless
``api_key_prefix['BearerAuth'] = 'Bearer'`` is also set.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from ml_platform.auth.principal import Principal
from ml_platform.auth.service import AuthService

BEARER_AUTH_DESCRIPTION = (
    "`Authorization: Bearer <token>`, where `<token>` is an API key (`mlp_...`) or a JWT "
    "(HS256, or RS256 via JWKS). The `Bearer ` word may be left out: a generated client's "
    "`config.api_key['BearerAuth'] = token` sends the bare token, which is accepted."
)


def bearer_credential(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` or of a bare ``<token>``; None for other schemes."""
    if not authorization:
        return None
    first, _, rest = authorization.strip().partition(" ")
    if not rest.strip():
        return None if first.lower() == "bearer" or not first else first
    if first.lower() == "bearer":
        return rest.strip()
    return None


async def authenticate(auth: AuthService, api_key: str | None, bearer: str | None) -> Principal:
    """The caller: from the principal cache on the event loop when it remembers this
    credential, else checked against the store on a worker thread. Every REST path that
    authenticates (the routes' dependency, audit, idempotency) comes through here."""
    principal = auth.remembered(api_key=api_key, bearer=bearer)
    if principal is not None:
        return principal
    return await run_in_threadpool(auth.authenticate, api_key=api_key, bearer=bearer)
