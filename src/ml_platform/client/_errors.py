"""The SDK's exception tree and the mapping from HTTP responses and gRPC statuses onto it.

MLPlatformError
+-- APIConnectionError          (no response: refused, reset, DNS, gRPC UNAVAILABLE)
|   +-- APITimeoutError         (timed out, gRPC DEADLINE_EXCEEDED)
+-- APIStatusError              (status_code, request_id, body: the problem document)
|   +-- AuthenticationError     401
|   +-- PermissionDeniedError   403
|   +-- ResourceNotFoundError   404
|   +-- ConflictError           409 (and 412: a stale If-Match)
|   +-- ValidationError         422 (and 400), with ``errors`` per field
|   +-- RateLimitError          429, with ``retry_after``
|   +-- ServerError             5xx
+-- JobFailedError              a job ended failed or cancelled (``job``, ``log_tail``)
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "FieldError",
    "JobFailedError",
    "MLPlatformError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResourceNotFoundError",
    "ServerError",
    "ValidationError",
    "status_error_from_response",
]


class MLPlatformError(Exception):
    """Base of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(MLPlatformError):
    """The request never got an answer (connection refused or reset, DNS, TLS, ...)."""

    def __init__(self, message: str = "could not connect to the ML platform") -> None:
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    def __init__(self, message: str = "the request to the ML platform timed out") -> None:
        super().__init__(message)


class FieldError:
    """One invalid field of a 422: where (``path``) and what is wrong (``message``)."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __repr__(self) -> str:
        return f"FieldError(path={self.path!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldError) and (self.path, self.message) == (
            other.path,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class APIStatusError(MLPlatformError):
    """The platform answered with an error status. ``body`` is the RFC 9457 problem."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.body: dict[str, Any] = body or {}
        self.headers: dict[str, str] = headers or {}
        self.code: str | None = self.body.get("code") if isinstance(self.body, dict) else None
        self.detail: str = str(self.body.get("detail", message))
        raw_errors = self.body.get("errors") or []
        self.errors: list[FieldError] = [
            FieldError(str(e.get("path", "")), str(e.get("message", "")))
            for e in raw_errors
            if isinstance(e, dict)
        ]

    def __str__(self) -> str:
        suffix = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self.status_code}: {self.message}{suffix}"


class AuthenticationError(APIStatusError):
    """401: missing or invalid API key or token."""


class PermissionDeniedError(APIStatusError):
    """403: authenticated, but not allowed."""


class ResourceNotFoundError(APIStatusError):
    """404: no such resource in your tenant."""


class ConflictError(APIStatusError):
    """409 (already exists, wrong state, in flight) or 412 (a stale ETag). Not retried, except
    when the server answers ``x-should-retry: true`` (an Idempotency-Key still in flight)."""


class ValidationError(APIStatusError):
    """422 / 400: the request is invalid; ``errors`` lists the fields."""


class RateLimitError(APIStatusError):
    """429: throttled or over quota. ``retry_after``: seconds the server asked to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the platform failed; retried automatically before this is raised."""


class JobFailedError(MLPlatformError):
    """A training job ended ``failed`` (or ``cancelled``) while waiting for it."""

    def __init__(self, job: Any, error_message: str | None, log_tail: str) -> None:
        status = getattr(job, "status", "failed")
        super().__init__(
            f"job {getattr(job, 'id', '?')} {status}: {error_message or 'no error message'}"
        )
        self.job = job
        self.error_message = error_message
        self.log_tail = log_tail


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ResourceNotFoundError,
    409: ConflictError,
    412: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    if status_code >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return {"detail": text[:2000]} if text else {}
    return body if isinstance(body, dict) else {"detail": str(body)}


def status_error_from_response(
    response: httpx.Response, *, retry_after: float | None = None
) -> APIStatusError:
    """The exception for an error response: its class by status, the problem as ``body``."""
    body = _problem(response)
    request_id = response.headers.get("x-request-id") or body.get("request_id")
    detail = body.get("detail") or body.get("title") or response.reason_phrase or "error"
    cls = status_error_class(response.status_code)
    common: dict[str, Any] = {
        "status_code": response.status_code,
        "request_id": request_id,
        "body": body,
        "headers": dict(response.headers),
    }
    if cls is RateLimitError:
        return RateLimitError(str(detail), retry_after=retry_after, **common)
    return cls(str(detail), **common)
