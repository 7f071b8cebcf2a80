"""Rules the spec states beyond JSON Schema hold on the live server (both backends).

A referent that does not exist is a 422 naming the field (stated on the response as
``x-schema-valid-rejection``); the code-package form takes only ``file`` (the spec says
``additionalProperties: false``).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant

OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print('hi')\n")
    return buffer.getvalue()


def test_a_missing_referent_is_a_422_naming_the_field_as_the_spec_says(
    platform: Platform, tenant: Tenant
) -> None:
    documented = OPENAPI["paths"]["/v1/jobs/training"]["post"]["responses"]["422"]
    assert "code package" in documented["x-schema-valid-rejection"]
    response = platform.client(tenant).post(
        "/v1/jobs/training", json=spec(source="sha256:" + "0" * 64)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in response.json()["errors"]] == ["source"]


def test_the_code_package_form_takes_only_file(platform: Platform, tenant: Tenant) -> None:
    form = OPENAPI["paths"]["/v1/code-packages"]["post"]["requestBody"]["content"]
    assert form["multipart/form-data"]["schema"]["additionalProperties"] is False
    client = platform.client(tenant)
    files = {"file": ("code.zip", _zip(), "application/zip")}
    refused = client.post("/v1/code-packages", files=files, data={"entrypoint": "train.py"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"path": "body.entrypoint", "message": "unknown form field"}
    ]
    accepted = client.post("/v1/code-packages", files=files)
    assert accepted.status_code in (200, 201), accepted.text
