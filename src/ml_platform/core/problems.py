"""The one RFC 9457 problem renderer every HTTP edge uses (FastAPI, the ASGI middleware, V2 REST).

Transport-neutral and standard library only: it turns a ``PlatformError`` (or a status and a
code) into ``(status, document)`` and the headers that go with it; each edge only serializes.
One status table lives here, so REST, V2 REST and the middleware cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from ml_platform.core.errors import ErrorCode, FieldViolation, PlatformError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://ml-platform.dev/problems/"
WWW_AUTHENTICATE = 'Bearer realm="ml-platform", ApiKey header="X-API-Key"'

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.ADMIN_REQUIRED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.INTERNAL: 500,
}

_CODE_FOR_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_ARGUMENT,
    406: ErrorCode.INVALID_ARGUMENT,
    409: ErrorCode.CONFLICT,
    412: ErrorCode.PRECONDITION_FAILED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_ARGUMENT,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.DEADLINE_EXCEEDED,
}

# RFC 9110 names; Python 3.11's HTTPStatus still says "Request Entity Too Large" etc.
_TITLES: dict[int, str] = {
    413: "Content Too Large",
    422: "Unprocessable Content",
}

INTERNAL_DETAIL = "internal error; quote the request_id when reporting it"


def http_status(code: ErrorCode, *, invalid_argument_status: int = 422) -> int:
    """The HTTP status for ``code``; V2 REST passes ``invalid_argument_status=400`` (KServe)."""
    if code is ErrorCode.INVALID_ARGUMENT:
        return invalid_argument_status
    return HTTP_STATUS.get(code, 500)


def code_for_status(status: int) -> ErrorCode:
    """The error code a bare HTTP status stands for (framework errors carry no code)."""
    found = _CODE_FOR_STATUS.get(status)
    if found is not None:
        return found
    return ErrorCode.INVALID_ARGUMENT if 400 <= status < 500 else ErrorCode.INTERNAL


def status_title(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_type(code: ErrorCode | str) -> str:
    value = code.value if isinstance(code, ErrorCode) else code
    return PROBLEM_BASE + value.lower().replace("_", "-")


def field_errors(violations: Iterable[FieldViolation]) -> list[dict[str, str]]:
    return [{"path": v.field, "message": v.message} for v in violations]


def problem_document(
    *,
    status: int,
    code: ErrorCode | str | None = None,
    title: str | None = None,
    detail: str,
    instance: str | None,
    request_id: str | None,
    errors: Iterable[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The problem body: RFC 9457 members plus ``code``, ``request_id`` and ``errors[]``."""
    if code is None:
        code = code_for_status(status)
    code_value = code.value if isinstance(code, ErrorCode) else code
    return {
        "type": problem_type(code_value),
        "title": title if title is not None else status_title(status),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code_value,
        "request_id": request_id,
        "errors": [{"path": e["path"], "message": e["message"]} for e in errors],
    }


def problem_from_error(
    exc: PlatformError,
    *,
    instance: str | None,
    request_id: str | None,
    invalid_argument_status: int = 422,
) -> tuple[int, dict[str, Any]]:
    """``(status, document)`` for a domain error (its message is written to be shown)."""
    status = http_status(exc.code, invalid_argument_status=invalid_argument_status)
    return status, problem_document(
        status=status,
        code=exc.code,
        detail=exc.message,
        instance=instance,
        request_id=request_id,
        errors=field_errors(exc.violations),
    )


def problem_headers(status: int, code: ErrorCode | str | None = None) -> dict[str, str]:
    """Headers every problem of this kind carries (lower-case names)."""
    headers: dict[str, str] = {}
    if status == 401:
        headers["www-authenticate"] = WWW_AUTHENTICATE
    value = code.value if isinstance(code, ErrorCode) else code
    if value == ErrorCode.QUOTA_EXCEEDED.value:
        headers["x-should-retry"] = "false"
    return headers


def problem_bytes(document: Mapping[str, Any]) -> bytes:
    """The document as compact JSON bytes.

    ASCII-escaped so an echoed lone surrogate or control character can never make the
    error response itself fail to encode; NaN is refused (it is not JSON).
    """
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii")
