"""v1 training jobs over a real socket, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ml_platform.core.jobs import JobStatus
from ml_platform.store.base import utcnow
from ml_platform.store.jobs import JobRepository
from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant

FULL_SPEC: dict[str, Any] = spec(
    name="full-spec-1",
    framework="xgboost",
    entrypoint="python train.py --epochs 3",
    compute={
        "compute_type": "gpu",
        "cpu_cores": 8,
        "memory_gb": 32,
        "gpu_count": 2,
        "gpu_type": "nvidia-a100",
    },
    hyperparameters={"learning_rate": 0.001, "batch_size": 64, "layers": [64, 32]},
    env_vars={"SECRET_TOKEN": "s3cr3t-value"},
    tags={"team": "ml-analytics", "project": "retention"},
)


def test_create_returns_201_with_every_field(client: httpx.Client, tenant: Tenant) -> None:
    response = client.post("/v1/jobs/training", json=FULL_SPEC)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["id"].startswith("job_")
    assert response.headers["location"] == f"/v1/jobs/training/{job['id']}"
    assert job["status"] == "pending"
    assert job["tenant_id"] == tenant.id
    assert job["created_by"] == f"{tenant.name}-key"
    assert job["created_at"].endswith("Z") or "+00:00" in job["created_at"]
    assert job["started_at"] is None and job["completed_at"] is None
    assert job["metrics"] == {} and job["resource_usage"] is None
    expected = {k: v for k, v in FULL_SPEC.items() if k != "env_vars"}
    for key, value in expected.items():
        assert job["spec"][key] == value
    assert "env_vars" not in job["spec"]


def test_defaults_of_the_seed_apply(client: httpx.Client) -> None:
    job = client.post("/v1/jobs/training", json=spec()).json()
    assert job["spec"]["entrypoint"] == "python train.py"
    assert job["spec"]["compute"] == {
        "compute_type": "cpu",
        "cpu_cores": 4,
        "memory_gb": 16,
        "gpu_count": None,
        "gpu_type": None,
    }
    assert job["spec"]["hyperparameters"] == {} and job["spec"]["tags"] == {}


def test_env_vars_are_never_returned(
    client: httpx.Client, platform: Platform, tenant: Tenant
) -> None:
    created = client.post("/v1/jobs/training", json=FULL_SPEC)
    job_id = created.json()["id"]
    responses = [
        created,
        client.get(f"/v1/jobs/training/{job_id}"),
        client.get("/v1/jobs/training"),
    ]
    for response in responses:
        assert "s3cr3t-value" not in response.text
        assert "SECRET_TOKEN" not in response.text
        assert "env_vars" not in response.text
    # ...but they are kept for the executor
    with platform.db.read() as session:
        assert JobRepository(session, tenant.id).env_vars(job_id) == {
            "SECRET_TOKEN": "s3cr3t-value"
        }


def test_get_list_cancel_happy_path(client: httpx.Client) -> None:
    job = client.post("/v1/jobs/training", json=spec()).json()
    got = client.get(f"/v1/jobs/training/{job['id']}")
    assert got.status_code == 200 and got.json() == job
    listed = client.get("/v1/jobs/training").json()
    assert listed["jobs"] == [job]
    assert (listed["total"], listed["page"], listed["page_size"], listed["has_more"]) == (
        1,
        1,
        50,
        False,
    )
    cancelled = client.delete(f"/v1/jobs/training/{job['id']}")
    assert cancelled.status_code == 204 and cancelled.content == b""
    after = client.get(f"/v1/jobs/training/{job['id']}").json()
    assert after["status"] == "cancelled"
    assert after["completed_at"] is not None


def test_cancel_of_a_finished_job_is_409(
    client: httpx.Client, platform: Platform, tenant: Tenant
) -> None:
    job_id = client.post("/v1/jobs/training", json=spec()).json()["id"]
    with platform.db.transaction() as session:
        repo = JobRepository(session, tenant.id)
        assert repo.transition(
            job_id, expected=[JobStatus.PENDING], target=JobStatus.RUNNING, started_at=utcnow()
        )
        assert repo.transition(
            job_id, expected=[JobStatus.RUNNING], target=JobStatus.SUCCEEDED, completed_at=utcnow()
        )
    response = client.delete(f"/v1/jobs/training/{job_id}")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "succeeded" in response.json()["detail"]
    assert client.get(f"/v1/jobs/training/{job_id}").json()["status"] == "succeeded"
    # cancelling twice is a conflict too
    other = client.post("/v1/jobs/training", json=spec()).json()["id"]
    assert client.delete(f"/v1/jobs/training/{other}").status_code == 204
    assert client.delete(f"/v1/jobs/training/{other}").status_code == 409


LIMIT_CASES = [
    ("name", {"name": ""}, "name"),
    ("name", {"name": "x" * 64}, "name"),
    ("name", {"name": "Upper_Case"}, "name"),
    ("framework", {"framework": "caffe"}, "framework"),
    ("docker_image", {"docker_image": None}, "docker_image"),
    ("data_path", {"data_path": ""}, "data_path"),
    ("output_path", {"output_path": 7}, "output_path"),
    ("cpu_cores", {"compute": {"cpu_cores": 0}}, "compute.cpu_cores"),
    ("cpu_cores", {"compute": {"cpu_cores": 97}}, "compute.cpu_cores"),
    ("memory_gb", {"compute": {"memory_gb": 0}}, "compute.memory_gb"),
    ("memory_gb", {"compute": {"memory_gb": 769}}, "compute.memory_gb"),
    ("gpu_count", {"compute": {"gpu_count": -1}}, "compute.gpu_count"),
    ("gpu_count", {"compute": {"gpu_count": 9}}, "compute.gpu_count"),
    ("gpu_count", {"compute": {"compute_type": "gpu"}}, "compute.gpu_count"),
    ("gpu_count", {"compute": {"compute_type": "gpu", "gpu_count": 0}}, "compute.gpu_count"),
    ("compute_type", {"compute": {"compute_type": "quantum"}}, "compute.compute_type"),
    ("hyperparameters", {"hyperparameters": [1, 2]}, "hyperparameters"),
    ("env_vars", {"env_vars": {"A": 1}}, "env_vars.A"),
    ("env_vars", {"env_vars": {"ML_PLATFORM_JOB_ID": "x"}}, "env_vars"),
    ("tags", {"tags": {"team": 3}}, "tags.team"),
    ("tags", {"tags": {"a=b": "c"}}, "tags"),
    ("unknown", {"surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(
    ("field", "change", "path"), LIMIT_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LIMIT_CASES)]
)
def test_every_limit_is_a_422_naming_the_field(
    client: httpx.Client, field: str, change: dict[str, Any], path: str
) -> None:
    body = spec(**change)
    response = client.post("/v1/jobs/training", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["code"] == "INVALID_ARGUMENT"
    paths = [e["path"] for e in problem["errors"]]
    assert any(p == f"body.{path}" or p.startswith(f"body.{path}") for p in paths), paths
    assert path.split(".")[-1] in problem["detail"] or field in problem["detail"]


def test_missing_required_fields_are_each_listed(client: httpx.Client) -> None:
    response = client.post("/v1/jobs/training", json={})
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert {
        "body.name",
        "body.framework",
        "body.docker_image",
        "body.data_path",
        "body.output_path",
    } <= paths


def test_spec_for_another_tenant_is_403(
    client: httpx.Client, platform: Platform, tenant: Tenant
) -> None:
    other = platform.new_tenant("other")
    response = client.post("/v1/jobs/training", json=spec(tenant_id=other.id))
    assert response.status_code == 403
    assert response.json()["code"] == "PERMISSION_DENIED"
    assert client.get("/v1/jobs/training").json()["total"] == 0
    own = client.post("/v1/jobs/training", json=spec(tenant_id=tenant.id))
    assert own.status_code == 201


def _comparable(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in ("request_id", "instance", "detail")}


def test_cross_tenant_matrix_is_404(platform: Platform) -> None:
    alice, bob = platform.new_tenant("alice"), platform.new_tenant("bob")
    a, b = platform.client(alice), platform.client(bob)
    job_id = a.post("/v1/jobs/training", json=spec()).json()["id"]
    missing = "job_00000000000000000000000000"
    for method, path in [
        ("GET", f"/v1/jobs/training/{job_id}"),
        ("DELETE", f"/v1/jobs/training/{job_id}"),
    ]:
        theirs = b.request(method, path)
        nothing = b.request(method, path.replace(job_id, missing))
        assert theirs.status_code == 404, (method, path)
        assert nothing.status_code == 404
        assert _comparable(theirs.json()) == _comparable(nothing.json())
    assert b.get("/v1/jobs/training").json()["total"] == 0
    assert job_id not in b.get("/v1/jobs/training").text
    # bob's cancel attempt changed nothing
    assert a.get(f"/v1/jobs/training/{job_id}").json()["status"] == "pending"
    # bob cannot create for alice
    assert b.post("/v1/jobs/training", json=spec(tenant_id=alice.id)).status_code == 403


def test_bad_requests_are_4xx_problems(client: httpx.Client) -> None:
    cases = [
        (
            client.post(
                "/v1/jobs/training",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            400,
        ),
        (
            client.post(
                "/v1/jobs/training",
                content=b"name=x",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            415,
        ),
        (
            client.post(
                "/v1/jobs/training", content=b"[1,2]", headers={"content-type": "application/json"}
            ),
            422,
        ),
        (client.get("/v1/jobs/training", params={"status": "sleeping"}), 422),
        (client.get("/v1/jobs/training", params={"framework": "caffe"}), 422),
        (client.get("/v1/jobs/training", params={"page": 0}), 422),
        (client.get("/v1/jobs/training", params={"page_size": 501}), 422),
        (client.get("/v1/jobs/training", params={"page_size": "many"}), 422),
        (client.get("/v1/jobs/training", params={"tags": "team"}), 422),
        (client.get("/v1/jobs/training", params={"tags": "a=b,,c=d"}), 422),
        (client.get("/v1/no/such/route"), 404),
        (client.put("/v1/jobs/training"), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status
        assert problem["detail"] and problem["code"] and problem["request_id"]
        assert "Traceback" not in response.text


def test_405_carries_allow(client: httpx.Client) -> None:
    response = client.put("/v1/jobs/training")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"] and "POST" in response.headers["allow"]


def test_oversized_body_is_413(client: httpx.Client, platform: Platform) -> None:
    limit = platform.settings.max_body_bytes
    body = spec(hyperparameters={"blob": "x" * (limit + 10)})
    response = client.post("/v1/jobs/training", json=body)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Any:
        yield b'{"name": "a", "hyperparameters": {"blob": "'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536
        yield b'"}}'

    chunked = client.post(
        "/v1/jobs/training", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert client.get("/v1/jobs/training").json()["total"] == 0


def test_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.get("/v1/jobs/training", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    assert client.get("/v1/jobs/training").headers["x-request-id"].startswith("req_")


def test_health_and_readiness(platform: Platform) -> None:
    anon = platform.client()
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/readyz").json() == {"status": "ready"}


def test_docs_work_offline(platform: Platform) -> None:
    anon = platform.client()
    for page, asset in [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]:
        html = anon.get(page)
        assert html.status_code == 200
        assert "cdn" not in html.text.lower() and "googleapis" not in html.text
        assert asset in html.text
        js = anon.get(f"/docs-assets/{asset}")
        assert js.status_code == 200 and len(js.content) > 100_000
