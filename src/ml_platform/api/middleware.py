"""Pure ASGI middleware: request ids and the request-body size limit."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.core.problems import (
    INTERNAL_DETAIL,
    PROBLEM_JSON,
    problem_bytes,
    problem_document,
)
from ml_platform.logs_format import ACCESS_LOGGER, accept_request_id, bind_request_id

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(ACCESS_LOGGER)
UNMATCHED_ROUTE = "unmatched"


def _problem(status: int, detail: str, request_id: str, path: str) -> bytes:
    document = problem_document(status=status, detail=detail, instance=path, request_id=request_id)
    return problem_bytes(document)


class RequestContextMiddleware:
    """Gives every request an ``X-Request-ID``, logs it, and enforces ``max_body_bytes``.

    The caller's ``X-Request-ID`` is kept when it is safe (``logs_format.accept_request_id``),
    else replaced; it is bound to the request's log context (every line logged while serving
    it names it) and, with ``access_log``, one ``ml_platform.access`` line per request records
    method, route template, status, duration, request id and tenant.

    The limit is checked against ``Content-Length`` up front and against the bytes actually
    received for chunked bodies, so nothing larger is ever buffered. Routes that stream large
    uploads (code packages, model artifacts) enforce their own, larger limits.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        large_body_prefixes: tuple[str, ...] = (),
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_body_prefixes = large_body_prefixes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(_incoming_request_id(scope))
        scope.setdefault("state", {})["request_id"] = request_id
        if not (self.access_log and access_logger.isEnabledFor(logging.INFO)):
            with bind_request_id(request_id):
                await self._handle(scope, receive, send, request_id)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        with bind_request_id(request_id):
            try:
                await self._handle(scope, receive, observed_send, request_id)
            finally:
                _log_access(scope, status["code"], time.perf_counter() - started, request_id)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        path: str = scope["path"]
        limited = not any(path.startswith(p) for p in self.large_body_prefixes)
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        if limited:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await self._reject(send_with_id, limit, request_id, path)
                return
        received = 0
        rejected = False

        async def guarded_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if limited and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not rejected:
                    # answer now; the app sees a disconnect and its own response is dropped
                    rejected = True
                    await self._reject(send_with_id, limit, request_id, path)
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not rejected:
                started = started or message["type"] == "http.response.start"
                await send_with_id(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if rejected:
                return
            if started:
                raise
            # the catch-all: a safe 500 problem, logged, and the keep-alive connection kept
            # (re-raising would make uvicorn close it)
            logger.exception("unhandled error on %s %s", scope.get("method"), path)
            await self._send_problem(send_with_id, 500, INTERNAL_DETAIL, request_id, path)

    async def _send_problem(
        self, send: Send, status: int, detail: str, request_id: str, path: str
    ) -> None:
        body = _problem(status, detail, request_id, path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _reject(self, send: Send, limit: int, request_id: str, path: str) -> None:
        body = _problem(
            413,
            f"request body exceeds the {limit}-byte limit (ML_PLATFORM_MAX_BODY_BYTES)",
            request_id,
            path,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _incoming_request_id(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            header: bytes = value
            return header
    return None


def _log_access(scope: Scope, status: int, seconds: float, request_id: str) -> None:
    """One access line: the route template (never the raw path or query), no headers."""
    route = getattr(scope.get("route"), "path", None)
    state: dict[str, Any] = scope.get("state", {})
    principal = state.get("principal")
    tenant = getattr(principal, "tenant_id", None)
    method = scope.get("method", "-")
    template = route if isinstance(route, str) else UNMATCHED_ROUTE
    duration_ms = round(seconds * 1000, 3)
    access_logger.info(
        "%s %s %s %.1fms tenant=%s",
        method,
        template,
        status,
        duration_ms,
        tenant or "-",
        extra={
            "method": method,
            "route": template,
            "status": status,
            "duration_ms": duration_ms,
            "tenant": tenant,
            "request_id": request_id,
        },
    )
