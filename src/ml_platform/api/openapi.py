"""OpenAPI polish: readable operation ids and 3.1 nullability."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute


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
        schema.setdefault("components", {}).setdefault("securitySchemes", {})
        # FastAPI documents 422 with its own HTTPValidationError; ours is a Problem
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                for status, response in responses.items():
                    content = response.get("content", {})
                    if status.startswith(("4", "5")) and "application/json" in content:
                        content["application/problem+json"] = {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                        del content["application/json"]
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
