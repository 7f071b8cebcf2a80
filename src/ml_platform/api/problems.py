"""RFC 9457 problem details for every error, whatever raised it."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_platform.core.errors import ErrorCode, MalformedRequest, PlatformError, QuotaExceeded
from ml_platform.core.problems import (
    INTERNAL_DETAIL,
    PROBLEM_BASE,
    PROBLEM_JSON,
    field_errors,
    http_status,
    problem_bytes,
    problem_document,
    problem_headers,
)

__all__ = ["PROBLEM_BASE", "PROBLEM_JSON", "install_problem_handlers", "problem_response"]

logger = logging.getLogger(__name__)


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: ErrorCode | str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    """A problem rendered by ``core.problems`` (the one renderer of every HTTP edge);
    ``extensions`` are extra members (RFC 9457 section 3.2), as a quota's ``limit``."""
    document = problem_document(
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        errors=errors or [],
    )
    document.update(extensions or {})
    all_headers = problem_headers(status, document["code"])
    all_headers.update(headers or {})
    return Response(
        problem_bytes(document), status_code=status, headers=all_headers, media_type=PROBLEM_JSON
    )


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        # model-level validators report at the model; name the field they talk about
        out.append({"path": _location(loc), "message": str(error.get("msg", "invalid"))})
    return out


async def _on_platform_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PlatformError)
    status = 400 if isinstance(exc, MalformedRequest) else http_status(exc.code)
    extensions = None
    if isinstance(exc, QuotaExceeded) and exc.limit is not None:
        extensions = {"limit": exc.limit, "limit_value": exc.limit_value, "usage": exc.usage}
    return problem_response(
        request,
        status,
        exc.message,
        code=exc.code,
        errors=field_errors(exc.violations),
        extensions=extensions,
    )


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return problem_response(request, 400, "request body is not valid JSON", errors=errors)
    summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
    return problem_response(request, 422, f"invalid request: {summary}", errors=errors)


async def _on_http_error(request: Request, exc: Exception) -> Response:
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


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        INTERNAL_DETAIL,
        code=ErrorCode.INTERNAL,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PlatformError, _on_platform_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
