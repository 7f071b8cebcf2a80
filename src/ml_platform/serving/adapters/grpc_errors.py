"""Map ``core.errors`` to gRPC status codes with rich details (google.rpc.Status).

``rpc_errors`` is the one place a servicer method's exception becomes a status: every
ModelServing and V2 method is wrapped in it, so a domain error ends the call with its mapped
code and anything else with INTERNAL and a generic message (logged, never echoed).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ml_platform.core.errors import ErrorCode, PlatformError, rpc_code_name
from ml_platform.governance.ratelimit import RateLimited, RateLimitUnavailable

logger = logging.getLogger(__name__)

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    code: grpc.StatusCode[rpc_code_name(code)] for code in ErrorCode
}
"""One table for both edges: core's google.rpc.Code name of each error code."""

MAX_MESSAGE_BYTES = 512
MAX_VIOLATIONS = 10
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
"""Bounds on what a status echoes back: the status travels in metadata (``grpc-message`` and
``grpc-status-details-bin``), which clients cap at 16 KiB, so an error about a huge input must
not itself become RESOURCE_EXHAUSTED."""

INTERNAL_MESSAGE = "internal error in the serving plane; it has been logged"


def _pack(msg: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)  # type: ignore[arg-type]
    return out


def bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), marked as cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def to_status(exc: PlatformError) -> grpc.Status:
    code = GRPC_CODES.get(exc.code, grpc.StatusCode.INTERNAL)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.code.value, domain="ml-platform"))]
    if exc.violations:
        shown = exc.violations[:MAX_VIOLATIONS]
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=bounded(v.field, MAX_FIELD_BYTES),
                description=bounded(v.message, MAX_DESCRIPTION_BYTES),
            )
            for v in shown
        ]
        if len(exc.violations) > len(shown):
            violations.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="...",
                    description=f"and {len(exc.violations) - len(shown)} more invalid fields",
                )
            )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(exc, RateLimited | RateLimitUnavailable):
        delay = duration_pb2.Duration(seconds=exc.decision.retry_after or 1)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    message = bounded(exc.message, MAX_MESSAGE_BYTES)
    rich = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(rich)


def internal_status() -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE))


async def abort(context: grpc.aio.ServicerContext[object, object], exc: BaseException) -> None:
    """Abort the RPC with ``exc`` mapped to a status; unknown exceptions become INTERNAL."""
    if isinstance(exc, PlatformError):
        status = to_status(exc)
    else:
        logger.error("unexpected error in a serving RPC", exc_info=exc)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


F = TypeVar("F", bound=Callable[..., Any])


def rpc_errors(method: F) -> F:
    """Wrap a servicer method ``(self, request, context)``, unary or server-streaming (an
    async generator), so that any exception it raises aborts the RPC with ``to_status``."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
                return
            except Exception as exc:
                err: BaseException = exc
            await abort(context, err)

        return cast(F, streaming)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            err: BaseException = exc
        await abort(context, err)
        raise AssertionError("unreachable: context.abort raises")

    return cast(F, unary)


def credentials(context: grpc.aio.ServicerContext[object, object]) -> tuple[str | None, str | None]:
    """(api_key, bearer token) from request metadata."""
    api_key = bearer = None
    for item in context.invocation_metadata() or ():
        key, value = item[0], item[1]
        if key == "x-api-key":
            api_key = str(value)
        elif key == "authorization":
            text = str(value)
            if text[:7].lower() == "bearer ":
                bearer = text[7:].strip()
    return api_key, bearer
