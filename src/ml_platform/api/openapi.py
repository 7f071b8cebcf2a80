"""The published OpenAPI document: FastAPI's, finished by one post-processing pass.

What the pass guarantees on every operation (so no route repeats it by hand):

* every error a request can meet is documented as a problem (``application/problem+json``,
  the ``Problem`` schema), inferred from the operation's shape: credentials -> 401 and 429
  (rate limits, quotas); a request body -> 400 (malformed), 413, 415 and 422; any parameter
  -> 422; a path parameter -> 404 (no such resource in your tenant); ``If-Match`` -> 412; an
  authenticated POST -> 409 (its ``Idempotency-Key`` is still in use); a ``page_token`` -> 400,
  marked as a status a schema-valid request can get (``api.responses.rejected_when``: any
  string is schema-valid, only a token this server issued is accepted). Routes add the rest
  with ``api.responses.problems`` / ``rejected_when``;
* integers are bounded to what the store holds (64-bit signed) unless a tighter bound is set;
* every component schema has an example (its own, or one composed from its fields' examples);
* the SSE events and WebSocket messages of job runtime are components (``x-sse-events`` on
  the streaming response, ``x-websockets`` at the root).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from ml_platform.api.responses import SCHEMA_VALID_REJECTION, problem_doc
from ml_platform.api.v1.job_runtime import WS_SUBPROTOCOL
from ml_platform.api.v1.job_runtime import router as job_runtime_router
from ml_platform.schemas.job_runtime import WEBSOCKET_MESSAGES

WEBSOCKET_PATH = f"{job_runtime_router.prefix}/{{job_id}}/stream"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}
BAD_CURSOR_REASON = "`page_token` is not one this server issued for this same query"
_UNSET = object()


def operation_id(route: APIRoute) -> str:
    """``create_training_job`` rather than FastAPI's path-derived ids."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            separate_input_output_schemas=app.separate_input_output_schemas,
        )
        app.openapi_schema = finish(schema)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """The post-processing pass described in the module docstring."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})
    schemas = components.setdefault("schemas", {})
    # FastAPI documents 422 with its own HTTPValidationError; ours is a Problem
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schema["info"].setdefault("license", {"name": "Apache-2.0", "identifier": "Apache-2.0"})
    # relative: generated clients set their host, /docs calls the server it was loaded from
    schema.setdefault("servers", [{"url": "/", "description": "The server of this document"}])
    _add_websocket_messages(schema)
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in _METHODS:
                operation.setdefault("security", [])  # no credentials needed (the probes)
                _document_errors(method, operation)
    _bound_integers(schema)
    for name in sorted(schemas):
        component = schemas[name]
        if "example" not in component and not component.get("examples"):
            example = _example(component, schemas, set())
            if example is not _UNSET:
                component["examples"] = [example]
    return schema


def error_statuses(method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses this operation can answer, from its shape."""
    statuses: set[int] = set()
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if operation.get("security"):
        statuses |= {401, 429}
        if method == "post":
            statuses.add(409)  # Idempotency-Key still in use
    if has_body:
        statuses |= {400, 413, 415, 422}
    if parameters or has_body:
        statuses.add(422)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if any(p.get("in") == "header" and p.get("name", "").lower() == "if-match" for p in parameters):
        statuses.add(412)
    if _pages_with_tokens(operation):
        statuses.add(400)
    return statuses


def _pages_with_tokens(operation: dict[str, Any]) -> bool:
    return any(
        p.get("in") == "query" and p.get("name") == "page_token"
        for p in operation.get("parameters", [])
    )


def _document_errors(method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in error_statuses(method, operation):
        responses.setdefault(str(status), {})
    for status, response in responses.items():
        if not status.startswith(("4", "5")):
            continue
        if status.startswith("5") and "application/json" not in response.get("content", {}):
            continue  # e.g. /readyz's 503 is described by its route
        content = response.setdefault("content", {})
        content.pop("application/json", None)
        content["application/problem+json"] = {"schema": dict(PROBLEM_REF)}
        standard = problem_doc(int(status)) if status.startswith("4") else None
        if standard is not None:
            if not response.get("description") or response["description"] == "Validation Error":
                response["description"] = standard["description"]
            for header, doc in standard.get("headers", {}).items():
                response.setdefault("headers", {}).setdefault(header, doc)
    if _pages_with_tokens(operation):
        # a signed cursor: any string is schema-valid, only a token we issued is accepted
        bad_token = responses["400"]
        if SCHEMA_VALID_REJECTION not in bad_token:
            bad_token[SCHEMA_VALID_REJECTION] = BAD_CURSOR_REASON
            bad_token["description"] += f"; also when {BAD_CURSOR_REASON}"
    operation["responses"] = dict(sorted(responses.items()))


def _bound_integers(node: Any) -> None:
    """64-bit bounds on every integer schema (not inside ``not``, where they would invert)."""
    if isinstance(node, list):
        for item in node:
            _bound_integers(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
        if "minimum" not in node and "exclusiveMinimum" not in node:
            node["minimum"] = INT64_MIN
        if "maximum" not in node and "exclusiveMaximum" not in node:
            node["maximum"] = INT64_MAX
        # FastAPI's OpenAPI model stores bounds as floats: 2**63 - 1 comes out as 2**63
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(node.get(key), float) and node[key].is_integer():
                node[key] = min(max(int(node[key]), INT64_MIN), INT64_MAX)
    for key, value in node.items():
        if key not in {"not", "example", "examples", "default", "enum", "const"}:
            _bound_integers(value)


def _add_websocket_messages(schema: dict[str, Any]) -> None:
    """The WebSocket's typed messages as components, and ``x-websockets`` pointing at them."""
    _, defs = models_json_schema(
        [(model, "serialization") for model in WEBSOCKET_MESSAGES],
        ref_template="#/components/schemas/{model}",
    )
    schemas = schema["components"]["schemas"]
    for name, definition in defs.get("$defs", {}).items():
        schemas.setdefault(name, definition)
    schema["x-websockets"] = {
        WEBSOCKET_PATH: {
            "summary": "Follow a training job: status, log and metric messages, then `end`",
            "subprotocols": [WS_SUBPROTOCOL, "mlp.auth.<API key or JWT>"],
            "closeCodes": {
                "1000": "the job ended and every message was sent",
                "4401": "unauthenticated",
                "4403": "origin not allowed",
                "4404": "no such job in your tenant",
            },
            "messages": {
                str(model.model_fields["type"].default): {
                    "$ref": f"#/components/schemas/{model.__name__}"
                }
                for model in WEBSOCKET_MESSAGES
            },
        }
    }


_FORMAT_EXAMPLES: dict[str, Any] = {
    "date-time": "2026-06-01T12:00:00Z",
    "date": "2026-06-01",
    "uri": "https://ml-platform.example.com/",
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "email": "ml-team@example.com",
}


def _example(node: Any, schemas: dict[str, Any], seen: set[str]) -> Any:
    """An example for ``node`` from the examples, defaults and enums of its parts, or _UNSET."""
    if not isinstance(node, dict):
        return _UNSET
    for key in ("example", "const", "default"):
        if key in node and node[key] is not None:
            return node[key]
    if node.get("examples"):
        return node["examples"][0]
    if node.get("enum"):
        return node["enum"][0]
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen or name not in schemas:
            return _UNSET
        return _example(schemas[name], schemas, seen | {name})
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = [b for b in node[key] if b.get("type") != "null"]
            for branch in branches:
                value = _example(branch, schemas, seen)
                if value is not _UNSET:
                    return value
            return None if len(branches) < len(node[key]) else _UNSET
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        out: dict[str, Any] = {}
        for name, prop in node.get("properties", {}).items():
            value = _example(prop, schemas, seen)
            if value is _UNSET:
                if name in node.get("required", []):
                    return _UNSET
                continue
            out[name] = value
        return out
    if kind == "array":
        item = _example(node.get("items", {}), schemas, seen)
        if item is _UNSET:
            return [] if not node.get("minItems") else _UNSET
        return [item] * max(1, int(node.get("minItems", 1)))
    if kind == "string":
        if node.get("format") in _FORMAT_EXAMPLES:
            return _FORMAT_EXAMPLES[node["format"]]
        if "pattern" in node:
            return _UNSET  # a rule we cannot guess: give the field an example
        return "string".ljust(int(node.get("minLength", 0)), "s")[: node.get("maxLength", 64)]
    if kind in ("integer", "number"):
        low = node.get("minimum", 0)
        if "exclusiveMinimum" in node:
            low = node["exclusiveMinimum"] + 1
        return max(low, 0) if kind == "integer" else float(max(low, 0))
    if kind == "boolean":
        return False
    return _UNSET
