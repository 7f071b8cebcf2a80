"""The audit trail, as pure ASGI: one event per mutating request and per auth failure.

Sits inside ``RequestContextMiddleware`` (the request id is known) and outside the
idempotency middleware (a replayed POST is audited too). When the response starts, before
it is forwarded, one event is handed to the one writer thread of ``store.audit_writer``, which
commits concurrent requests' events together (``ml_platform.store.audit``); with the default
``committed`` delivery the response waits for that commit, with ``buffered`` it does not
(``ML_PLATFORM_AUDIT_DELIVERY``):

- ``POST``/``PUT``/``PATCH``/``DELETE``: any outcome; any other method: only a 401. A POST
  route that only reads (a lookup whose question is a JSON body, ``POST /v1/features/online``)
  is marked with ``@audited_as_read`` under its route decorator and audited like a GET.
- action: ``auth.failed`` on 401; otherwise derived from the matched route, never the raw
  path: the route template's collection segments (the first static one and each static one
  after a parameter, ``/v1/models/{name}/versions`` -> ``models.versions``) and the first word
  of the route's name (``create_model_version`` -> ``create``): ``models.versions.create``.
  A path no route matches is ``unrouted`` (its raw path is not recorded).
- resource: the ``Location`` of a created resource, else the path parameters, as the
  parameter values joined by ``/`` (``job_...``, ``my-model/3``).
- principal: the key name or JWT subject the route authenticated (``api.deps`` leaves it in
  the request state); when the route never authenticated (a replay, a 415 before auth) the
  middleware resolves it with the same ``AuthService``. credential: the key's public prefix
  (``mlp_1a2b3c4d``, only when the key has the issued shape) or ``jwt``. No bodies, no other
  headers, no secrets.
- An exception before the response starts is recorded as 500 (the outer catch-all answers).
- A failed write is logged and the response goes out: auditing never breaks the API.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.api.credentials import authenticate, bearer_credential
from ml_platform.auth.keys import KEY_PREFIX
from ml_platform.auth.principal import CredentialKind, Principal
from ml_platform.auth.service import AuthService
from ml_platform.core.errors import PlatformError
from ml_platform.store.audit import AuditEvent
from ml_platform.store.audit_writer import AuditWriter
from ml_platform.store.base import utcnow

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUTH_FAILED = "auth.failed"
UNROUTED = "unrouted"
PRINCIPAL_STATE = "principal"
_ISSUED_KEY_PREFIX = re.compile(r"mlp_[0-9a-f]{8}(?=_)")
_VERSION_SEGMENT = re.compile(r"v\d+")
READ_ONLY_MARK = "_mlp_audited_as_read"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def audited_as_read(endpoint: Endpoint) -> Endpoint:
    """Mark a route endpoint whose POST changes nothing (a lookup): no audit event unless
    it answers 401, as for a GET. Apply it below ``@router.post(...)``."""
    setattr(endpoint, READ_ONLY_MARK, True)
    return endpoint


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def credential_of(scope: Scope) -> str | None:
    """What identifies the presented credential without revealing it."""
    token = bearer_credential(_header(scope, b"authorization"))
    api_key = _header(scope, b"x-api-key") or (
        token if token and token.startswith(KEY_PREFIX) else None  # `Bearer mlp_...`
    )
    if api_key:
        match = _ISSUED_KEY_PREFIX.match(api_key)
        return match.group(0) if match else "api_key"
    return CredentialKind.JWT.value if token else None


def action_of(template: str, name: str) -> str:
    """``/v1/models/{name}/versions`` + ``create_model_version`` -> ``models.versions.create``."""
    segments = [s for s in template.split("/") if s]
    if segments and _VERSION_SEGMENT.fullmatch(segments[0]):
        segments = segments[1:]
    parts: list[str] = []
    after_param = True
    for segment in segments:
        if segment.startswith("{"):
            after_param = True
            continue
        if after_param:
            parts.append(segment.replace("-", "_"))
        after_param = False
    verb = name.split("_", 1)[0] if name else "call"
    return ".".join([*parts, verb]) if parts else verb


def _routes(routes: Any) -> Iterator[Any]:
    """Every route, the ones of included routers too (FastAPI keeps those nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _routes(nested.routes)
        else:
            yield route


def _match(app: Any, path: str, method: str) -> tuple[Any, dict[str, Any]] | None:
    """The route of ``method path`` and its path parameters, for a request the router never
    saw (a replayed POST) and for the ``Location`` of a created resource."""
    router = getattr(app, "router", None)
    if router is None:
        return None
    probe: Scope = {"type": "http", "path": path, "root_path": "", "method": method}
    partial: tuple[Any, dict[str, Any]] | None = None
    for route in _routes(router.routes):
        match, child = route.matches(probe)
        if match is Match.FULL:
            return route, dict(child.get("path_params", {}))
        if match is Match.PARTIAL and partial is None:
            partial = route, dict(child.get("path_params", {}))
    return partial


def _routed(scope: Scope) -> tuple[Any, dict[str, Any]] | None:
    """The route the router picked for this request (it leaves it in the scope), else ours."""
    route = scope.get("route")
    if route is not None and getattr(route, "path_format", None):
        return route, dict(scope.get("path_params", {}))
    return _match(scope.get("app"), scope["path"], scope["method"].upper())


def _audited_as_mutation(scope: Scope, method: str) -> bool:
    """A mutating method on a route not marked ``audited_as_read`` (or on no route)."""
    if method not in MUTATING_METHODS:
        return False
    matched = _routed(scope)
    endpoint = getattr(matched[0], "endpoint", None) if matched is not None else None
    return getattr(endpoint, READ_ONLY_MARK, False) is not True


def _resource(params: dict[str, Any]) -> str | None:
    values = [str(v) for v in params.values() if v is not None and str(v) != ""]
    return "/".join(values) if values else None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, auth: AuthService, writer: AuditWriter) -> None:
        self.app = app
        self.auth = auth
        self.writer = writer  # its delivery decides whether the response waits for the commit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"].upper()
        recorded = False

        async def audited_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                status = int(message["status"])
                if status == 401 or _audited_as_mutation(scope, method):
                    await self._record(scope, status, message.get("headers", []))
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not recorded and _audited_as_mutation(scope, method):
                recorded = True
                await self._record(scope, 500, [])
            raise

    async def _record(self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            event = await self._event(scope, status, headers)
            await self.writer.write(event)
        except Exception:
            logger.exception(
                "could not write the audit event of request %s",
                scope.get("state", {}).get("request_id"),
            )

    async def _event(
        self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]]
    ) -> AuditEvent:
        method: str = scope["method"].upper()
        state: dict[str, Any] = scope.get("state", {})
        matched = _routed(scope)
        route_template: str | None = None
        if matched is not None:
            route, params = matched
            route_template = getattr(route, "path_format", None)
            action = action_of(route_template or "", getattr(route, "name", "") or "")
            resource = _resource(params)
        else:
            action, resource = UNROUTED, None
        if status == 201:
            location = next((v for k, v in headers if k.lower() == b"location"), None)
            if location is not None:
                created = _match(scope.get("app"), unquote(urlsplit(location.decode()).path), "GET")
                if created is not None:
                    resource = _resource(created[1]) or resource
        principal: Principal | None = None
        if status == 401:
            action = AUTH_FAILED
        else:
            principal = state.get(PRINCIPAL_STATE)
            if principal is None:
                principal = await self._authenticate(scope)
        client = scope.get("client")
        return AuditEvent(
            occurred_at=utcnow(),
            tenant_id=principal.tenant_id if principal else None,
            principal=principal.name if principal else None,
            credential=credential_of(scope),
            action=action,
            resource=resource,
            method=method,
            route=route_template,
            outcome=status,
            request_id=state.get("request_id"),
            client=str(client[0]) if client else None,
        )

    async def _authenticate(self, scope: Scope) -> Principal | None:
        api_key = _header(scope, b"x-api-key")
        bearer = bearer_credential(_header(scope, b"authorization"))
        if not api_key and not bearer:
            return None
        try:
            return await authenticate(self.auth, api_key, bearer)
        except PlatformError:
            return None
