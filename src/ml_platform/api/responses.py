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


def problem_doc(status: int) -> dict[str, Any] | None:
    """The OpenAPI response of a problem with ``status`` (None for statuses we do not answer).

    ``api.openapi`` applies it to every 4xx of every operation, so routes need only name the
    statuses their shape does not imply (see ``api.openapi.error_statuses``)."""
    if status not in _DESCRIPTIONS:
        return None
    entry: dict[str, Any] = {
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
            "Retry-After": {
                "description": "Seconds to wait",
                "schema": {"type": "integer", "minimum": 0, "maximum": 86400},
            }
        }
    return entry


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry = problem_doc(status)
        if entry is None:
            raise ValueError(f"no problem documentation for HTTP {status}")
        out[status] = {"model": Problem, **entry}
    return out


AUTHED = (401, 429)


SCHEMA_VALID_REJECTION = "x-schema-valid-rejection"
"""On a problem response: why a request its schema accepts can still get this status."""


def rejected_when(status: int, why: str) -> dict[int | str, dict[str, Any]]:
    """A problem ``status`` that a schema-valid request can still get, and ``why``.

    For rules JSON Schema cannot state: a referent that must exist (this API answers 422
    naming the field, not 404: the URL's resource is fine, the body names what is not), bytes
    that must be a real archive or model file, a page token this server must have issued. The
    response says so in its description and in ``x-schema-valid-rejection``, where the contract
    fuzzer (tests/api/test_contract_fuzz.py) reads which statuses a valid request may get.
    """
    entry = problems(status)[status]
    return {
        status: {
            **entry,
            "description": f"{entry['description']}; also when {why}",
            SCHEMA_VALID_REJECTION: why,
        }
    }
