"""Issue 9, Security 4 (paths): 422/404 messages about locations never show server paths.

Before, a refused ``data_path`` answered "outside the paths this tenant may use
(/srv/.../tenants/<id>, /shared/...)" and a missing ``artifact_uri`` file "no file at
'/srv/.../tenants/<id>/x.joblib'": the platform's data directory for anyone to read.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Platform
from tests.security.test_location_policy import _job_body, _new_model


def _server_paths(platform: Platform) -> list[str]:
    data_dir = Path(platform.settings.data_dir).resolve()
    return [str(data_dir), "/tenants/", *map(str, platform.settings.shared_read_roots)]


def test_refused_job_paths_answer_tenant_relative_messages(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    for field, value in (
        ("data_path", "/etc/passwd"),
        ("data_path", "../../../../etc/passwd"),
        ("output_path", "/tmp/out"),
        ("output_path", "../elsewhere"),
    ):
        response = client.post("/v1/jobs/training", json=_job_body(**{field: value}))
        assert response.status_code == 422, response.text
        text = json.dumps(response.json())
        for secret in _server_paths(platform):
            assert secret not in text, (value, text)
        assert "relative to your tenant's area" in text, text


def test_missing_artifact_file_is_named_not_located(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    name = _new_model(client)
    response = client.post(
        f"/v1/models/{name}/versions", json={"artifact_uri": "data/missing.joblib"}
    )
    assert response.status_code in (404, 422), response.text
    text = json.dumps(response.json())
    for secret in _server_paths(platform):
        assert secret not in text, text
    assert "missing.joblib" in text
