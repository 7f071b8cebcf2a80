"""Pure ASGI middleware: request ids and the request-body size limit."""

from __future__ import annotations

import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_platform.core.problems import (
    INTERNAL_DETAIL,
    PROBLEM_JSON,
    problem_bytes,
    problem_document,
)

logger = logging.getLogger(__name__)


def _problem(status: int, detail: str, request_id: str, path: str) -> bytes:
    document = problem_document(
        status=status, detail=detail, instance=path, request_id=request_id
    )
    return problem_bytes(document)


class RequestContextMiddleware:
    """Gives every request an ``X-Request-ID`` and enforces ``max_body_bytes``.

    The limit is checked against ``Content-Length`` up front and against the bytes actually
    received for chunked bodies, so nothing larger is ever buffered. Routes that stream large
    uploads (code packages, model artifacts) enforce their own, larger limits.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, large_body_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_body_prefixes = large_body_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
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


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if 0 < len(candidate) <= 128 and candidate.isprintable():
                return candidate
    return None
