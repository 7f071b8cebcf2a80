"""Counts every versioned REST request (``/v1``, ``/v2``) per tenant into a ``UsageRecorder``.

Pure ASGI, after the response: the tenant is the one ``api.deps`` authenticated (``""`` when
the request authenticated as nobody), the route its template (``api.metrics.route_template``,
``unmatched`` when no route matched), the version the template's (or the path's) prefix. No
I/O per request: the recorder flushes to the store in the background.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ml_platform.api.metrics import UNMATCHED, api_version, route_template
from ml_platform.governance.usage import UsageRecorder
from ml_platform.store.usage import ANONYMOUS


class UsageMiddleware:
    def __init__(self, app: ASGIApp, *, recorder: UsageRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            template = route_template(scope)
            version = api_version(template if template != UNMATCHED else scope.get("path", ""))
            if version != "none":
                principal = scope.get("state", {}).get("principal")
                tenant = getattr(principal, "tenant_id", None) or ANONYMOUS
                self.recorder.count(tenant, version, scope.get("method", "GET"), template)
