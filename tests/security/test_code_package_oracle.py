"""Issue 9, Security 3: a code package upload reveals nothing about other tenants' uploads.

Before, tenant B uploading bytes tenant A had uploaded got 201 with A's ``created_at`` (the
shared blob's mtime): content addressing told B that, and when, someone uploaded this code.
Now each tenant has its own record over the shared blob.
"""

from __future__ import annotations

import io
import secrets
import zipfile
from datetime import UTC, datetime

import httpx

from tests.conftest import Platform


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", f"print('same code, two teams {secrets.token_hex(8)}')\n")
    return buffer.getvalue()


def _upload(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post(
        "/v1/code-packages", content=data, headers={"Content-Type": "application/zip"}
    )


def test_second_tenant_upload_answers_as_its_first(platform: Platform) -> None:
    data = _zip()
    team_a = platform.client(platform.new_tenant("a"))
    team_b = platform.client(platform.new_tenant("b"))

    first_a = _upload(team_a, data)
    assert first_a.status_code == 201, first_a.text
    a_created = datetime.fromisoformat(first_a.json()["created_at"])
    between = datetime.now(UTC)

    first_b = _upload(team_b, data)
    assert first_b.status_code == 201, first_b.text
    b_doc = first_b.json()
    b_created = datetime.fromisoformat(b_doc["created_at"])
    assert a_created <= between <= b_created
    assert b_created != a_created
    assert first_b.headers["location"] == first_a.headers["location"]
    assert set(b_doc) == set(first_a.json())

    # each tenant keeps its own record: replays and reads show its own time
    again_a = _upload(team_a, data)
    assert again_a.status_code == 200
    assert datetime.fromisoformat(again_a.json()["created_at"]) == a_created
    again_b = _upload(team_b, data)
    assert again_b.status_code == 200
    assert datetime.fromisoformat(again_b.json()["created_at"]) == b_created
    package_id = b_doc["id"]
    got_b = team_b.get(f"/v1/code-packages/{package_id}").json()
    assert datetime.fromisoformat(got_b["created_at"]) == b_created
    got_a = team_a.get(f"/v1/code-packages/{package_id}").json()
    assert datetime.fromisoformat(got_a["created_at"]) == a_created

    # a third tenant that never uploaded it cannot see it
    team_c = platform.client(platform.new_tenant("c"))
    assert team_c.get(f"/v1/code-packages/{package_id}").status_code == 404
