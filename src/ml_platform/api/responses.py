"""Reusable OpenAPI response declarations (every error is a problem document)."""

from __future__ import annotations

from typing import Any

from ml_platform.schemas.problems import Problem

_DESCRIPTIONS = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "The credentials may not act for the named tenant",
    404: "No such resource in your tenant",
    409: "The resource's state does not allow this",
    412: "The `If-Match` ETag is stale",
    413: "Request body too large",
    415: "Unsupported content type",
    422: "Validation failed; `errors` lists each offending field",
    429: "Rate limited or quota exhausted",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "description": "The accepted authentication schemes",
                    "schema": {"type": "string"},
                }
            }
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
            }
        out[status] = entry
    return out


AUTHED = (401, 429)
