"""One error tree for the whole platform.

Domain code raises these; the REST edge maps ``code`` to an HTTP status and a problem
document, the gRPC edge to a status code. Nothing here knows about either transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ErrorCode(str, Enum):
    """Stable, documented error codes (google.rpc.Code names plus a few of our own)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ADMIN_REQUIRED = "ADMIN_REQUIRED"  # a PERMISSION_DENIED: the route is for administrators
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CONFLICT = "CONFLICT"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid input field: a dotted path and what is wrong with it."""

    field: str
    message: str


@dataclass
class PlatformError(Exception):
    """Base of every error the platform raises on purpose."""

    message: str
    code: ErrorCode = ErrorCode.INTERNAL
    violations: list[FieldViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidArgument(PlatformError):
    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message, ErrorCode.INVALID_ARGUMENT, violations or [])


class MalformedRequest(InvalidArgument):
    """Bad request syntax rather than an invalid value (a malformed header or page token):
    HTTP 400 instead of InvalidArgument's 422; gRPC INVALID_ARGUMENT all the same."""


class Unauthenticated(PlatformError):
    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, ErrorCode.UNAUTHENTICATED)


class PermissionDenied(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.PERMISSION_DENIED)


class NotFound(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.NOT_FOUND)


class AlreadyExists(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.ALREADY_EXISTS)


class Conflict(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.CONFLICT)


class PreconditionFailed(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.PRECONDITION_FAILED)


class PayloadTooLarge(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.PAYLOAD_TOO_LARGE)


class UnsupportedMediaType(PlatformError):
    """The body's declared content type is not one this operation reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.UNSUPPORTED_MEDIA_TYPE)


class QuotaExceeded(PlatformError):
    """A tenant quota refuses a creation; ``limit`` names it (``max_queued_jobs``), with its
    value and the usage it was checked against (problem members ``limit``, ``limit_value``,
    ``usage``)."""

    def __init__(
        self,
        message: str,
        *,
        limit: str | None = None,
        limit_value: float | None = None,
        usage: float | None = None,
    ) -> None:
        super().__init__(message, ErrorCode.QUOTA_EXCEEDED)
        self.limit = limit
        self.limit_value = limit_value
        self.usage = usage


class ResourceExhausted(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.RESOURCE_EXHAUSTED)


class Unavailable(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.UNAVAILABLE)


class DeadlineExceeded(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.DEADLINE_EXCEEDED)


class InternalError(PlatformError):
    """An unexpected failure, with a message that is safe to show the caller."""

    def __init__(
        self, message: str = "internal error; quote the request_id when reporting it"
    ) -> None:
        super().__init__(message, ErrorCode.INTERNAL)


RPC_CODE: dict[ErrorCode, str] = {
    # the google.rpc.Code name each error travels as on gRPC (API-GUIDE rule 7)
    ErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    ErrorCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorCode.PERMISSION_DENIED: "PERMISSION_DENIED",
    ErrorCode.ADMIN_REQUIRED: "PERMISSION_DENIED",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    ErrorCode.CONFLICT: "ABORTED",
    ErrorCode.PRECONDITION_FAILED: "FAILED_PRECONDITION",
    ErrorCode.PAYLOAD_TOO_LARGE: "RESOURCE_EXHAUSTED",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "INVALID_ARGUMENT",
    ErrorCode.QUOTA_EXCEEDED: "RESOURCE_EXHAUSTED",
    ErrorCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    ErrorCode.INTERNAL: "INTERNAL",
}


def rpc_code_name(code: ErrorCode) -> str:
    """The google.rpc.Code name for ``code`` (``grpc.StatusCode[name]`` on the gRPC edge)."""
    return RPC_CODE[code]
