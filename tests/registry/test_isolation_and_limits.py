"""Tenants never see each other's models or artifacts; oversized uploads leave nothing behind;
deployed models and versions cannot be deleted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.orm import Session

from tests.conftest import Platform, Tenant
from tests.registry.conftest import BuiltModels, new_model, succeeded_job


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_every_route_answers_404_for_another_tenants_model(
    platform: Platform, tenant: Tenant, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    version = client.post(
        f"/v1/models/{name}/versions", files={"file": ("m.joblib", models.joblib_bytes)}
    ).json()
    assert (
        client.put(f"/v1/models/{name}/aliases/production", json={"version": 1}).status_code == 201
    )
    etag = client.get(f"/v1/models/{name}/aliases/production").headers["etag"]
    job_id = succeeded_job(platform, tenant, {"model.joblib": models.joblib_bytes})

    other = platform.client(platform.new_tenant("other"))
    base = f"/v1/models/{name}"
    upload = {"files": {"file": ("m.joblib", models.joblib_bytes)}}
    matrix: list[tuple[str, str, dict[str, object]]] = [
        ("GET", base, {}),
        ("PATCH", base, {"json": {"description": "mine now"}}),
        ("DELETE", base, {}),
        ("GET", f"{base}/versions", {}),
        ("POST", f"{base}/versions", upload),
        ("POST", f"{base}/versions", {"json": {"job_id": job_id}}),
        ("GET", f"{base}/versions/1", {}),
        ("GET", f"{base}/versions/latest", {}),
        ("GET", f"{base}/versions/production", {}),
        ("GET", f"{base}/versions/1/artifact", {}),
        ("DELETE", f"{base}/versions/1", {}),
        ("GET", f"{base}/aliases/production", {}),
        ("GET", f"{base}/aliases/latest", {}),
        (
            "PUT",
            f"{base}/aliases/production",
            {"json": {"version": 1}, "headers": {"If-Match": etag}},
        ),
        ("DELETE", f"{base}/aliases/production", {}),
    ]
    for method, url, kwargs in matrix:
        response = other.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert name in response.json()["detail"]

    # the same model name is free in the other tenant, and their own model cannot
    # reach tenant one's job or artifact through any URI spelling
    own = new_model(other)
    assert other.post(f"/v1/models/{own}/versions", json={"job_id": job_id}).status_code == 404
    uri = version["artifact_uri"]
    path = uri.removeprefix("file://")
    artifacts = (platform.settings.data_dir / "artifacts").resolve()
    relative = Path(path).relative_to(artifacts)
    other_id = other.get(f"/v1/models/{own}").json()["tenant_id"]
    tricks = [
        uri,
        path,
        quote(uri, safe=":/"),
        f"{artifacts}/tenants/{other_id}/../{relative.relative_to('tenants')}",
        f"file://{artifacts}/tenants/{other_id}/../../{relative}",
        f"{artifacts}//{relative}",
    ]
    for trick in tricks:
        response = other.post(f"/v1/models/{own}/versions", json={"artifact_uri": trick})
        assert response.status_code in (404, 422), (trick, response.text)
    # nothing leaked: tenant one's model is unchanged, the other's has no versions
    assert client.get(base).json()["latest_version"] == 1
    assert other.get(f"/v1/models/{own}/versions").json()["total"] == 0


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    small_upload_platform: Platform,
) -> None:
    platform = small_upload_platform
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    name = new_model(client)
    data_dir = platform.settings.data_dir.resolve()
    before = set(_files_under(data_dir / "artifacts")) | set(_files_under(data_dir / "tmp"))
    big = os.urandom(200 * 1024)

    declared = client.post(f"/v1/models/{name}/versions", files={"file": ("big.joblib", big)})
    assert declared.status_code == 413
    assert declared.json()["code"] == "PAYLOAD_TOO_LARGE"

    # no Content-Length (chunked): the stream is cut off at the limit
    boundary = "limitboundary"

    def chunked() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.joblib"\r\n\r\n'
        ).encode()
        for offset in range(0, len(big), 16 * 1024):
            yield big[offset : offset + 16 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = client.post(
        f"/v1/models/{name}/versions",
        content=chunked(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 413, streamed.text

    after = set(_files_under(data_dir / "artifacts")) | set(_files_under(data_dir / "tmp"))
    assert after == before
    assert client.get(f"/v1/models/{name}/versions").json()["total"] == 0
    small = client.post(f"/v1/models/{name}/versions", files={"file": ("ok.pkl", b"\x80\x04N.")})
    assert small.status_code == 422  # under the limit, reaches the model check
    assert set(_files_under(data_dir / "tmp")) == {p for p in before if "tmp" in p.parts}


class _Deployed:
    def __init__(self, tenant_id: str, model: str, version: int) -> None:
        self.target = (tenant_id, model, version)

    def live_deployments(
        self, session: Session, tenant_id: str, model: str, version: int | None
    ) -> list[str]:
        wanted_tenant, wanted_model, wanted_version = self.target
        if (tenant_id, model) == (wanted_tenant, wanted_model) and version in (
            None,
            wanted_version,
        ):
            return ["churn-prod"]
        return []


@pytest.fixture
def deployed_hook(platform: Platform) -> Iterator[list[_Deployed]]:
    registry = platform.context.registry
    assert registry is not None
    original = registry.deployments
    holder: list[_Deployed] = []

    class Delegate:
        def live_deployments(
            self, session: Session, tenant_id: str, model: str, version: int | None
        ) -> list[str]:
            return [
                n for h in holder for n in h.live_deployments(session, tenant_id, model, version)
            ]

    registry.deployments = Delegate()
    yield holder
    registry.deployments = original


def test_deployed_models_and_versions_cannot_be_deleted(
    tenant: Tenant, client: httpx.Client, models: BuiltModels, deployed_hook: list[_Deployed]
) -> None:
    name = new_model(client)
    for _ in range(2):
        client.post(f"/v1/models/{name}/versions", files={"file": ("m.onnx", models.onnx_bytes)})
    deployed_hook.append(_Deployed(tenant.id, name, 1))

    version = client.delete(f"/v1/models/{name}/versions/1")
    assert version.status_code == 409
    assert "churn-prod" in version.json()["detail"]
    model = client.delete(f"/v1/models/{name}")
    assert model.status_code == 409
    assert "churn-prod" in model.json()["detail"]
    assert client.delete(f"/v1/models/{name}/versions/2").status_code == 204
    assert client.delete(f"/v1/models/{name}/versions/latest").status_code == 422

    deployed_hook.clear()
    assert client.delete(f"/v1/models/{name}").status_code == 204
    assert client.get(f"/v1/models/{name}").status_code == 404
