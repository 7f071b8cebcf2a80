"""Map ``core.errors`` to gRPC status codes with rich details (google.rpc.Status)."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ml_platform.core.errors import ErrorCode, PlatformError

logger = logging.getLogger(__name__)

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.CONFLICT: grpc.StatusCode.ABORTED,
    ErrorCode.PRECONDITION_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.QUOTA_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

INTERNAL_MESSAGE = "internal error in the serving plane; it has been logged"


def _pack(msg: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)  # type: ignore[arg-type]
    return out


def to_status(exc: PlatformError) -> grpc.Status:
    code = GRPC_CODES.get(exc.code, grpc.StatusCode.INTERNAL)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.code.value, domain="ml-platform"))]
    if exc.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.message
                        )
                        for v in exc.violations
                    ]
                )
            )
        )
    rich = status_pb2.Status(code=code.value[0], message=exc.message, details=details)
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
