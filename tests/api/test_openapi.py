"""The committed OpenAPI document matches the app and follows the API guide's rules."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_exporter() -> Any:
    spec = importlib.util.spec_from_file_location(
        "export_openapi", ROOT / "scripts" / "export_openapi.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    rendered = _load_exporter().render()
    committed = (ROOT / "openapi.json").read_text()
    assert rendered == committed, (
        "openapi.json is stale: run `.venv/bin/python scripts/export_openapi.py` and commit it"
    )
    result: dict[str, Any] = json.loads(rendered)
    return result


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_openapi_is_3_1_with_readable_unique_operation_ids(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    for op_id in ids:
        assert op_id.islower() and "__" not in op_id and not op_id.endswith(("_get", "_post"))
    assert "create_training_job" in ids


def test_every_operation_has_one_tag_a_summary_and_documented_errors(
    document: dict[str, Any],
) -> None:
    declared = {t["name"] for t in document.get("tags", [])}
    for path, method, op in _operations(document):
        assert len(op.get("tags", [])) == 1, (path, method)
        assert op["tags"][0] in declared, (path, method)
        assert op.get("summary"), (path, method)
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and "content" in response:
                assert "application/problem+json" in response["content"], (path, method, status)


def test_job_routes_document_the_seed_statuses(document: dict[str, Any]) -> None:
    create = document["paths"]["/v1/jobs/training"]["post"]
    assert {"201", "400", "401", "403", "413", "422", "429"} <= set(create["responses"])
    assert "links" in create["responses"]["201"]
    cancel = document["paths"]["/v1/jobs/training/{job_id}"]["delete"]
    assert {"204", "401", "404", "409"} <= set(cancel["responses"])


def test_clean_components_and_3_1_nullability(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    assert '"nullable"' not in text
    names = document["components"]["schemas"].keys()
    assert not [n for n in names if n.startswith("Body_") or n.endswith(("-Input", "-Output"))]
    spec = document["components"]["schemas"]["TrainingJobSpec"]
    assert spec["properties"]["env_vars"].get("writeOnly") is True
    assert "example" in spec or "examples" in spec
    job = document["components"]["schemas"]["TrainingJob"]
    assert job["properties"]["id"].get("readOnly") is True
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} >= {"apiKey", "http"}
