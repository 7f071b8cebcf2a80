"""RFC 9457 problem details for every error, whatever raised it."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_platform.core.errors import ErrorCode, PlatformError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://ml-platform.dev/problems/"

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
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
    409: ErrorCode.CONFLICT,
    412: ErrorCode.PRECONDITION_FAILED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.INVALID_ARGUMENT,
    422: ErrorCode.INVALID_ARGUMENT,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    503: ErrorCode.UNAVAILABLE,
}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: ErrorCode | str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    code_value = code.value if isinstance(code, ErrorCode) else code
    if code_value is None:
        code_value = _CODE_FOR_STATUS.get(status, ErrorCode.INTERNAL).value
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code_value.lower().replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code_value,
        "request_id": getattr(request.state, "request_id", None),
        "errors": errors or [],
    }
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault(
            "WWW-Authenticate", 'Bearer realm="ml-platform", ApiKey header="X-API-Key"'
        )
    return JSONResponse(body, status_code=status, headers=all_headers, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        # model-level validators report at the model; name the field they talk about
        out.append({"path": _location(loc), "message": str(error.get("msg", "invalid"))})
    return out


async def _on_platform_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PlatformError)
    status = HTTP_STATUS.get(exc.code, 500)
    errors = [{"path": v.field, "message": v.message} for v in exc.violations]
    headers = {"x-should-retry": "false"} if exc.code is ErrorCode.QUOTA_EXCEEDED else None
    return problem_response(
        request, status, exc.message, code=exc.code, errors=errors, headers=headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return problem_response(request, 400, "request body is not valid JSON", errors=errors)
    summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
    return problem_response(request, 422, f"invalid request: {summary}", errors=errors)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = (
            f"method {request.method} is not allowed on {request.url.path}; "
            f"allowed: {', '.join(allowed)}"
        )
    return problem_response(request, exc.status_code, detail, headers=headers)


def _flat_routes(routes: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for route in routes:
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        flat.extend(_flat_routes(nested) if nested is not None else [route])
    return flat


def _allowed_methods(request: Request) -> list[str]:
    """Every method any route accepts on this path (Starlette reports only the first route's)."""
    methods: set[str] = set()
    for route in _flat_routes(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        "internal error; quote the request_id when reporting it",
        code=ErrorCode.INTERNAL,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PlatformError, _on_platform_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
