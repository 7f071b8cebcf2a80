"""Tenant quotas through the REST API, on both stores (the scheduler is off here, so jobs stay
pending): ``GET /v1/quotas``, the admin routes, and each hard limit's exact 429 problem."""

from __future__ import annotations

import io
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.job_specs import spec
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """A real (tiny) fitted scikit-learn model, as ``joblib.dump`` writes it."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), buffer)
    return buffer.getvalue()


NAMES = [
    "max_concurrent_jobs",
    "max_gpus",
    "max_cpu_cores",
    "max_memory_gb",
    "max_queued_jobs",
    "max_deployments",
    "max_storage_bytes",
]


@dataclass
class Admin:
    platform: Platform
    client: httpx.Client

    def set(self, tenant: Tenant, method: str = "PATCH", **values: Any) -> dict[str, Any]:
        response = self.client.request(
            method, f"/v1/admin/tenants/{tenant.name}/quotas", json=values
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def admin(platform: Platform) -> Iterator[Admin]:
    name = f"ops-{secrets.token_hex(4)}"
    platform.context.auth.create_tenant(name)
    key = platform.context.auth.create_api_key(name, "ops", admin=True)
    yield Admin(platform, platform.client(Tenant(id="", name=name, api_key=key.plaintext)))


def quotas_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in body["quotas"]}


def _problem(
    response: httpx.Response, *, instance: str, detail: str, limit: str, value: int, usage: int
) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-should-retry"] == "false"
    assert response.json() == {
        "type": "https://ml-platform.dev/problems/quota-exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "detail": detail,
        "instance": instance,
        "code": "QUOTA_EXCEEDED",
        "request_id": response.headers["x-request-id"],
        "errors": [],
        "limit": limit,
        "limit_value": value,
        "usage": usage,
    }


def test_get_quotas_shows_each_default_beside_zero_usage(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    response = client.get("/v1/quotas")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == tenant.id and body["tenant_name"] == tenant.name
    assert [item["name"] for item in body["quotas"]] == NAMES
    items = quotas_of(body)
    assert items["max_concurrent_jobs"]["limit"] == platform.settings.tenant_max_concurrent_jobs
    assert items["max_concurrent_jobs"]["kind"] == "delay"
    assert items["max_queued_jobs"]["kind"] == "hard"
    assert all(item["source"] == "default" for item in items.values())
    assert all(item["usage"] == 0 for item in items.values())
    assert all(items[n]["limit"] is None for n in NAMES[1:])  # unlimited by default


def test_usage_counts_pending_jobs_deployments_and_stored_bytes(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    for _ in range(3):
        assert client.post("/v1/jobs/training", json=spec()).status_code == 201
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, model, size_bytes=70)
    add_version_row(platform, tenant, model, size_bytes=30)
    created = client.post("/v1/deployments", json={"name": f"d-{model}", "model": model})
    assert created.status_code == 201, created.text
    items = quotas_of(client.get("/v1/quotas").json())
    assert items["max_queued_jobs"]["usage"] == 3
    assert items["max_deployments"]["usage"] == 1
    assert items["max_storage_bytes"]["usage"] == 100
    assert items["max_concurrent_jobs"]["usage"] == 0  # no scheduler here: nothing runs


def test_a_user_key_on_admin_routes_is_403(tenant: Tenant, client: httpx.Client) -> None:
    path = f"/v1/admin/tenants/{tenant.name}/quotas"
    for method, body in (("GET", None), ("PUT", {}), ("PATCH", {"max_gpus": 1})):
        response = client.request(method, path, json=body)
        assert response.status_code == 403, (method, response.text)
        assert response.json()["code"] == "ADMIN_REQUIRED"
    # nothing was changed by the refused writes
    assert quotas_of(client.get("/v1/quotas").json())["max_gpus"]["source"] == "default"


def test_admin_put_and_patch(admin: Admin, tenant: Tenant, client: httpx.Client) -> None:
    put = quotas_of(admin.set(tenant, "PUT", max_queued_jobs=5, max_cpu_cores=2.5))
    assert put["max_queued_jobs"]["limit"] == 5 and put["max_queued_jobs"]["source"] == "override"
    assert put["max_cpu_cores"]["limit"] == 2.5
    patched = quotas_of(admin.set(tenant, max_deployments=1))
    assert patched["max_queued_jobs"]["limit"] == 5  # PATCH leaves the others alone
    assert patched["max_deployments"]["limit"] == 1
    back = quotas_of(admin.set(tenant, max_queued_jobs=None))
    assert back["max_queued_jobs"]["limit"] is None
    assert back["max_queued_jobs"]["source"] == "default"
    # PUT replaces every override: what it does not name goes back to the default
    replaced = quotas_of(admin.set(tenant, "PUT", max_gpus=0))
    assert replaced["max_deployments"]["source"] == "default"
    assert replaced["max_gpus"]["limit"] == 0
    # the tenant sees what the administrator set; by id works as well as by name
    assert quotas_of(client.get("/v1/quotas").json())["max_gpus"]["limit"] == 0
    by_id = admin.client.get(f"/v1/admin/tenants/{tenant.id}/quotas")
    assert by_id.status_code == 200 and by_id.json()["tenant_name"] == tenant.name


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"max_queued_jobs": -1}, "body.max_queued_jobs"),
        ({"max_gpus": 1.5}, "body.max_gpus"),
        ({"max_jobs": 3}, "body.max_jobs"),
        ({"max_memory_gb": "lots"}, "body.max_memory_gb"),
    ],
)
def test_bad_overrides_are_422_naming_the_field(
    admin: Admin, tenant: Tenant, body: dict[str, Any], path: str
) -> None:
    response = admin.client.patch(f"/v1/admin/tenants/{tenant.name}/quotas", json=body)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]


def test_unknown_tenant_is_404(admin: Admin) -> None:
    response = admin.client.get("/v1/admin/tenants/no-such-tenant-x/quotas")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_another_tenants_quota_is_invisible(
    platform: Platform, admin: Admin, tenant: Tenant
) -> None:
    other = platform.new_tenant("other")
    admin.set(other, max_queued_jobs=1, max_deployments=0)
    mine = platform.client(tenant).get("/v1/quotas").json()
    assert mine["tenant_id"] == tenant.id
    assert all(item["source"] == "default" for item in mine["quotas"])
    theirs = platform.client(tenant).get(f"/v1/admin/tenants/{other.name}/quotas")
    assert theirs.status_code == 403


def test_max_queued_jobs(admin: Admin, tenant: Tenant, client: httpx.Client) -> None:
    admin.set(tenant, max_queued_jobs=2)
    jobs = [client.post("/v1/jobs/training", json=spec()) for _ in range(2)]
    assert [j.status_code for j in jobs] == [201, 201]
    refused = client.post("/v1/jobs/training", json=spec())
    _problem(
        refused,
        instance="/v1/jobs/training",
        detail=(
            "tenant quota max_queued_jobs is 2: the tenant already has 2 (jobs pending); "
            "wait until some of them start or cancel one, or ask an administrator to raise "
            "the quota"
        ),
        limit="max_queued_jobs",
        value=2,
        usage=2,
    )
    # cancelling one frees its place
    assert client.delete(f"/v1/jobs/training/{jobs[0].json()['id']}").status_code == 204
    assert client.post("/v1/jobs/training", json=spec()).status_code == 201


def test_max_deployments(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, model)
    admin.set(tenant, max_deployments=1)
    first = client.post("/v1/deployments", json={"name": "d-one", "model": model})
    assert first.status_code == 201, first.text
    refused = client.post("/v1/deployments", json={"name": "d-two", "model": model})
    _problem(
        refused,
        instance="/v1/deployments",
        detail=(
            "tenant quota max_deployments is 1: the tenant already has 1 (deployments); "
            "delete a deployment first, or ask an administrator to raise the quota"
        ),
        limit="max_deployments",
        value=1,
        usage=1,
    )
    assert client.get("/v1/deployments/d-two").status_code == 404


def test_max_storage_bytes(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client, model_bytes: bytes
) -> None:
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    size = len(model_bytes)
    add_version_row(platform, tenant, model, size_bytes=size)
    add_version_row(platform, tenant, model, size_bytes=size)
    admin.set(tenant, max_storage_bytes=3 * size)
    path = f"/v1/models/{model}/versions"
    upload = {"file": ("m.joblib", model_bytes)}
    fits = client.post(path, files=upload)  # exactly at the limit: accepted
    assert fits.status_code == 201, fits.text
    assert quotas_of(client.get("/v1/quotas").json())["max_storage_bytes"]["usage"] == 3 * size
    refused = client.post(path, files=upload)
    _problem(
        refused,
        instance=path,
        detail=(
            f"tenant quota max_storage_bytes is {3 * size}: the tenant already stores "
            f"{3 * size} bytes (data files, code packages, model artifacts) and this version "
            f"adds {size}; delete data files or model versions you no longer need, or ask an "
            "administrator to raise the quota"
        ),
        limit="max_storage_bytes",
        value=3 * size,
        usage=3 * size,
    )
    assert client.get(f"/v1/models/{model}/versions/4").status_code == 404


def test_concurrent_submits_at_the_limit_admit_exactly_the_limit(
    platform: Platform, admin: Admin, tenant: Tenant
) -> None:
    limit, racers = 3, 10
    admin.set(tenant, max_queued_jobs=limit)
    start = threading.Barrier(racers)
    statuses: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        with httpx.Client(
            base_url=platform.base_url, headers={"X-API-Key": tenant.api_key}, timeout=60
        ) as own:
            start.wait()
            status = own.post("/v1/jobs/training", json=spec()).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=submit) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * limit + [429] * (racers - limit)
    listed = platform.client(tenant).get("/v1/jobs/training", params={"status": "pending"})
    assert listed.json()["total"] == limit


def _rejected(platform: Platform, limit: str) -> float:
    """``mlp_quota_rejections_total{limit=...}`` as /metrics shows it now."""
    text = httpx.get(platform.base_url + "/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "mlp_quota_rejections":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {"limit": limit}:
                    return sample.value
    raise AssertionError(f"mlp_quota_rejections_total{{limit={limit}}} missing")


def test_rejections_are_counted_by_limit(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    before = _rejected(platform, "max_queued_jobs")
    assert _rejected(platform, "max_deployments") >= 0  # every hard quota's series exists
    admin.set(tenant, max_queued_jobs=0)
    for _ in range(2):
        assert client.post("/v1/jobs/training", json=spec()).status_code == 429
    assert _rejected(platform, "max_queued_jobs") == before + 2


def test_the_sdk_does_not_retry_an_exhausted_quota(
    platform: Platform, admin: Admin, tenant: Tenant
) -> None:
    from ml_platform.client import Client, RateLimitError

    admin.set(tenant, max_queued_jobs=0)
    before = _rejected(platform, "max_queued_jobs")
    sdk = Client(base_url=platform.base_url, api_key=tenant.api_key, max_retries=2)
    with sdk, pytest.raises(RateLimitError) as raised:
        sdk.train(**spec())
    assert raised.value.status_code == 429 and raised.value.code == "QUOTA_EXCEEDED"
    assert raised.value.body["limit"] == "max_queued_jobs"
    # x-should-retry: false -> one attempt, not three
    assert _rejected(platform, "max_queued_jobs") == before + 1


def test_the_sdk_reads_the_same_quotas_sync_and_async(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    import asyncio

    from ml_platform.client import AsyncClient, Client

    admin.set(tenant, max_queued_jobs=7)
    assert client.post("/v1/jobs/training", json=spec()).status_code == 201
    with Client(base_url=platform.base_url, api_key=tenant.api_key) as sdk:
        found = sdk.quotas()
    assert found.tenant_id == tenant.id
    assert found["max_queued_jobs"].limit == 7 and found["max_queued_jobs"].usage == 1
    assert found["max_queued_jobs"].kind == "hard" and found.request_id

    async def read() -> Any:
        async with AsyncClient(base_url=platform.base_url, api_key=tenant.api_key) as sdk:
            return await sdk.quotas()

    assert asyncio.run(read()).raw == found.raw
