"""The registry over real HTTP, on SQLite and PostgreSQL (the ``platform`` fixture)."""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ml_platform.schemas.models import ModelFormat
from tests.conftest import Platform, Tenant
from tests.registry.conftest import BuiltModels, job_output_dir, new_model, succeeded_job

pytestmark = pytest.mark.slow


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_job_becomes_version_one_with_inferred_signature_alias_and_identical_download(
    platform: Platform, tenant: Tenant, client: httpx.Client, models: BuiltModels
) -> None:
    job_id = succeeded_job(
        platform, tenant, {"model.joblib": models.joblib_bytes, "metrics.json": b'{"a": 1}'}
    )
    name = new_model(client, description="churn")

    created = client.post(f"/v1/models/{name}/versions", json={"job_id": job_id})
    assert created.status_code == 201, created.text
    version = created.json()
    assert version["version"] == 1
    assert created.headers["location"] == f"/v1/models/{name}/versions/1"
    assert version["format"] == "joblib"
    assert version["signature_source"] == "inferred"
    assert [f["name"] for f in version["signature"]["input_features"]] == list(models.features)
    assert version["signature"]["output_labels"] == ["churn", "stay"]
    assert version["sha256"] == _sha(models.joblib_bytes)
    assert version["size_bytes"] == len(models.joblib_bytes)
    assert version["lineage"] == {
        "job_id": job_id,
        "job_name": "churn-train",
        "hyperparameters": {"C": 1.0, "max_iter": 100},
        "metrics": {"accuracy": 0.93, "loss": 0.21},
        "data_path": "data/train.csv",
    }
    assert version["source"]["kind"] == "job"

    alias = client.put(f"/v1/models/{name}/aliases/production", json={"version": 1})
    assert alias.status_code == 201, alias.text
    assert alias.json()["version"] == 1

    # the job's output can go away: the version has its own immutable copy
    for path in job_output_dir(platform, tenant, job_id).iterdir():
        path.unlink()
    download = client.get(f"/v1/models/{name}/versions/production/artifact")
    assert download.status_code == 200
    assert _sha(download.content) == version["sha256"]
    assert download.headers["etag"] == f'"{version["sha256"]}"'
    not_modified = client.get(
        f"/v1/models/{name}/versions/1/artifact",
        headers={"If-None-Match": download.headers["etag"]},
    )
    assert not_modified.status_code == 304

    model = client.get(f"/v1/models/{name}").json()
    assert model["latest_version"] == 1
    assert model["aliases"] == {"production": 1, "latest": 1}
    by_alias = client.get(f"/v1/models/{name}/versions/production").json()
    assert by_alias["version"] == 1
    assert sorted(by_alias["aliases"]) == ["latest", "production"]


def test_twenty_parallel_creates_yield_versions_one_to_twenty(
    platform: Platform, tenant: Tenant, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)

    def create(i: int) -> int:
        with platform.client(tenant) as own:
            response = own.post(
                f"/v1/models/{name}/versions",
                files={"file": (f"model-{i}.onnx", models.onnx_bytes)},
                data={"metadata": json.dumps({"i": i})},
            )
        assert response.status_code == 201, response.text
        return int(response.json()["version"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        numbers = list(pool.map(create, range(20)))
    assert sorted(numbers) == list(range(1, 21))
    listed = client.get(f"/v1/models/{name}/versions", params={"page_size": 7})
    assert listed.json()["total"] == 20
    assert [v["version"] for v in listed.json()["versions"]] == list(range(20, 13, -1))
    assert client.get(f"/v1/models/{name}/aliases/latest").json()["version"] == 20


def test_alias_moves_need_a_current_etag(client: httpx.Client, models: BuiltModels) -> None:
    name = new_model(client)
    for _ in range(3):
        upload = client.post(
            f"/v1/models/{name}/versions", files={"file": ("m.onnx", models.onnx_bytes)}
        )
        assert upload.status_code == 201, upload.text
    first = client.put(f"/v1/models/{name}/aliases/production", json={"version": 1})
    assert first.status_code == 201
    etag_1 = first.headers["etag"]

    fetched = client.get(f"/v1/models/{name}/aliases/production")
    assert fetched.headers["etag"] == etag_1
    assert (
        client.get(
            f"/v1/models/{name}/aliases/production", headers={"If-None-Match": etag_1}
        ).status_code
        == 304
    )

    # Alice moves it with the ETag she read
    moved = client.put(
        f"/v1/models/{name}/aliases/production", json={"version": 2}, headers={"If-Match": etag_1}
    )
    assert moved.status_code == 200, moved.text
    etag_2 = moved.headers["etag"]
    assert etag_2 != etag_1

    # Bob read it before Alice moved it: his move is refused, nothing changes
    stale = client.put(
        f"/v1/models/{name}/aliases/production", json={"version": 3}, headers={"If-Match": etag_1}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "PRECONDITION_FAILED"
    blind = client.put(f"/v1/models/{name}/aliases/production", json={"version": 3})
    assert blind.status_code == 412
    assert client.get(f"/v1/models/{name}/aliases/production").json()["version"] == 2

    # latest is implicit and cannot be set; an alias must point at an existing version
    assert client.put(f"/v1/models/{name}/aliases/latest", json={"version": 1}).status_code == 422
    assert client.put(f"/v1/models/{name}/aliases/staging", json={"version": 9}).status_code == 422
    # deleting an aliased version is refused; deleting the alias (current ETag) works
    assert client.delete(f"/v1/models/{name}/versions/2").status_code == 409
    assert (
        client.delete(
            f"/v1/models/{name}/aliases/production", headers={"If-Match": etag_1}
        ).status_code
        == 412
    )
    assert (
        client.delete(
            f"/v1/models/{name}/aliases/production", headers={"If-Match": etag_2}
        ).status_code
        == 204
    )
    assert client.delete(f"/v1/models/{name}/versions/2").status_code == 204
    assert client.get(f"/v1/models/{name}/versions/2").status_code == 404
    # numbers are never reused
    again = client.post(
        f"/v1/models/{name}/versions", files={"file": ("m.onnx", models.onnx_bytes)}
    )
    assert again.json()["version"] == 4


def test_model_crud_filters_and_conditional_get(client: httpx.Client) -> None:
    team = f"team-{secrets.token_hex(3)}"
    a = new_model(client, framework="sklearn", tags={"team": team})
    b = new_model(client, framework="xgboost", tags={"team": team})
    assert client.post("/v1/models", json={"name": a, "framework": "sklearn"}).status_code == 409
    bad = client.post("/v1/models", json={"name": "Not_Valid", "framework": "sklearn"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"].endswith("name")

    listed = client.get("/v1/models", params={"tags": f"team={team}"}).json()
    assert {m["name"] for m in listed["models"]} == {a, b}
    only_xgb = client.get("/v1/models", params={"tags": f"team={team}", "framework": "xgboost"})
    assert [m["name"] for m in only_xgb.json()["models"]] == [b]

    got = client.get(f"/v1/models/{a}")
    etag = got.headers["etag"]
    assert client.get(f"/v1/models/{a}", headers={"If-None-Match": etag}).status_code == 304
    patched = client.patch(f"/v1/models/{a}", json={"description": "new", "tags": {"x": "y"}})
    assert patched.status_code == 200
    assert patched.json()["description"] == "new"
    assert client.get(f"/v1/models/{a}", headers={"If-None-Match": etag}).status_code == 200
    assert client.patch(f"/v1/models/{a}", json={"name": "renamed"}).status_code == 422

    assert client.delete(f"/v1/models/{a}").status_code == 204
    assert client.get(f"/v1/models/{a}").status_code == 404


def test_non_model_files_are_422_and_the_api_keeps_serving(
    client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    text = client.post(f"/v1/models/{name}/versions", files={"file": ("notes.txt", b"hello")})
    assert text.status_code == 422
    assert "not a model artifact" in text.json()["detail"]

    not_a_model = pickle.dumps({"weights": [1, 2, 3]})
    plain = client.post(f"/v1/models/{name}/versions", files={"file": ("d.pkl", not_a_model)})
    assert plain.status_code == 422
    assert "not a scikit-learn or XGBoost model" in plain.json()["detail"]

    claimed = client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("m.bin", b"\x80\x04garbage")},
        data={"format": "joblib"},
    )
    assert claimed.status_code == 422
    assert "could not load" in claimed.json()["detail"]

    # a pickle that asks for 8 GiB when loaded hits the loader's memory limit, not the API's
    bomb = pickle.dumps(_Bomb())
    boom = client.post(f"/v1/models/{name}/versions", files={"file": ("bomb.pkl", bomb)})
    assert boom.status_code == 422, boom.text
    assert "memory" in boom.json()["detail"]

    assert client.get(f"/v1/models/{name}/versions").json()["total"] == 0
    ok = client.post(
        f"/v1/models/{name}/versions", files={"file": ("m.joblib", models.joblib_bytes)}
    )
    assert ok.status_code == 201
    assert ok.json()["version"] == 1


class _Bomb:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (bytearray, (8 * 1024**3,))


def test_given_signature_and_format_win(client: httpx.Client, models: BuiltModels) -> None:
    name = new_model(client)
    signature = {
        "input_features": [{"name": "x0", "dtype": "float32"}, {"name": "x1", "dtype": "float32"}],
        "output_labels": ["churn", "stay"],
    }
    response = client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("model", models.onnx_bytes)},
        data={"format": "onnx", "signature": json.dumps(signature), "description": "given"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == ModelFormat.ONNX.value
    assert body["signature_source"] == "given"
    assert body["signature"] == signature
    bad = client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("m.onnx", models.onnx_bytes)},
        data={"signature": json.dumps({"input_features": [{"name": "a", "dtype": "complex"}]})},
    )
    assert bad.status_code == 422


def test_versions_from_uris_the_tenant_may_read(
    platform: Platform, tenant: Tenant, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    area = platform.settings.data_dir.resolve() / "tenants" / tenant.id
    (area / "models").mkdir(parents=True, exist_ok=True)
    (area / "models" / "churn.joblib").write_bytes(models.joblib_bytes)
    from_area = client.post(
        f"/v1/models/{name}/versions", json={"artifact_uri": "models/churn.joblib"}
    )
    assert from_area.status_code == 201, from_area.text
    assert from_area.json()["source"] == {
        "kind": "uri",
        "job_id": None,
        "uri": "models/churn.joblib",
        "filename": "churn.joblib",
    }
    # an artifact of the tenant's own registry can seed another version
    copied = client.post(
        f"/v1/models/{name}/versions", json={"artifact_uri": from_area.json()["artifact_uri"]}
    )
    assert copied.status_code == 201
    assert copied.json()["sha256"] == from_area.json()["sha256"]
    outside = client.post(f"/v1/models/{name}/versions", json={"artifact_uri": "/etc/passwd"})
    assert outside.status_code == 422
    missing = client.post(
        f"/v1/models/{name}/versions", json={"artifact_uri": "models/none.joblib"}
    )
    assert missing.status_code == 404
    both = client.post(f"/v1/models/{name}/versions", json={"artifact_uri": "a", "job_id": "job_x"})
    assert both.status_code == 422
    wrong_type = client.post(
        f"/v1/models/{name}/versions", content=b"x", headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    broken = client.post(
        f"/v1/models/{name}/versions", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400


def test_job_versions_need_a_succeeded_job_and_one_model_file(
    platform: Platform, tenant: Tenant, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    several = succeeded_job(
        platform, tenant, {"a.joblib": models.joblib_bytes, "b.onnx": models.onnx_bytes}
    )
    ambiguous = client.post(f"/v1/models/{name}/versions", json={"job_id": several})
    assert ambiguous.status_code == 422
    assert "artifact_path" in ambiguous.json()["detail"]
    chosen = client.post(
        f"/v1/models/{name}/versions", json={"job_id": several, "artifact_path": "b.onnx"}
    )
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["format"] == "onnx"
    escape = client.post(
        f"/v1/models/{name}/versions", json={"job_id": several, "artifact_path": "../../x"}
    )
    assert escape.status_code == 422
    empty = succeeded_job(platform, tenant, {"log.txt": b"done"})
    assert client.post(f"/v1/models/{name}/versions", json={"job_id": empty}).status_code == 422
    assert (
        client.post(f"/v1/models/{name}/versions", json={"job_id": "job_nope"}).status_code == 404
    )

    pending = client.post(
        "/v1/jobs/training",
        json={
            "name": "still-pending",
            "framework": "sklearn",
            "docker_image": "local",
            "entrypoint": "python -c 'import time; time.sleep(60)'",
            "data_path": "data",
            "output_path": "outputs/pending",
        },
    )
    if pending.status_code == 201:
        job_id = pending.json()["id"]
        conflict = client.post(f"/v1/models/{name}/versions", json={"job_id": job_id})
        assert conflict.status_code == 409
        client.delete(f"/v1/jobs/training/{job_id}")


def test_upload_ids_and_paths_are_not_trusted(
    platform: Platform, client: httpx.Client, models: BuiltModels
) -> None:
    name = new_model(client)
    response = client.post(
        f"/v1/models/{name}/versions", files={"file": ("../../../evil.joblib", models.joblib_bytes)}
    )
    assert response.status_code == 201, response.text
    uri = response.json()["artifact_uri"]
    root = (platform.settings.data_dir / "artifacts").resolve().as_uri()
    assert uri.startswith(root + "/tenants/")
    assert ".." not in uri
    assert Path(uri.removeprefix("file://")).name == "evil.joblib"


def test_create_version_answers_the_representation_get_answers(
    client: httpx.Client, models: BuiltModels
) -> None:
    """Issue 9, item 10: the 201 body said ``aliases: []`` where GET said ``["latest"]``."""
    name = new_model(client)
    created = client.post(
        f"/v1/models/{name}/versions", files={"file": ("m.joblib", models.joblib_bytes)}
    )
    assert created.status_code == 201, created.text
    fetched = client.get(f"/v1/models/{name}/versions/1")
    assert fetched.status_code == 200
    assert created.json()["aliases"] == ["latest"]
    assert created.json() == fetched.json()

    second = client.post(
        f"/v1/models/{name}/versions", files={"file": ("m.joblib", models.joblib_bytes)}
    )
    assert second.status_code == 201, second.text
    assert second.json() == client.get(f"/v1/models/{name}/versions/2").json()
    assert client.get(f"/v1/models/{name}/versions/1").json()["aliases"] == []
