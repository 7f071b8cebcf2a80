"""Delay quotas with the scheduler on (local executor, real subprocesses), on both stores:
a job over its tenant's running-jobs, GPU, CPU or memory quota stays pending with the reason,
``GET /v1/quotas`` counts what runs, and a raised quota takes effect on the next pass."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BACKENDS, Platform, Tenant, start_platform
from tests.jobs.conftest import JOB_SETTINGS, job_body, wait_for

SLEEPER = 'python -c "import time; time.sleep(600)"'
SETTINGS = {**JOB_SETTINGS, "node_cpu_cores": 8, "node_memory_gb": 16, "node_gpus": 4,
            "tenant_max_concurrent_jobs": 4, "cancel_grace_seconds": 0.5}  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def running_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: Any,
) -> Iterator[Platform]:
    backend: str = request.param
    running, server = start_platform(
        backend,
        tmp_path_factory.mktemp(f"quota-jobs-{backend}"),
        database_url_factory(backend),
        **SETTINGS,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


class World:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.tenant: Tenant = platform.new_tenant("q")
        self.client = platform.client(self.tenant)
        name = f"ops-{secrets.token_hex(4)}"
        platform.context.auth.create_tenant(name)
        key = platform.context.auth.create_api_key(name, "ops", admin=True).plaintext
        self.admin = platform.client(Tenant(id="", name=name, api_key=key))
        self.jobs: list[str] = []

    def quota(self, **values: Any) -> None:
        path = f"/v1/admin/tenants/{self.tenant.name}/quotas"
        response = self.admin.patch(path, json=values)
        assert response.status_code == 200, response.text

    def submit(self, cpu: float = 1, memory: float = 1, gpus: int = 0) -> str:
        compute: dict[str, Any] = {"cpu_cores": cpu, "memory_gb": memory}
        if gpus:
            compute.update(compute_type="gpu", gpu_count=gpus)
        response = self.client.post(
            "/v1/jobs/training", json=job_body(entrypoint=SLEEPER, compute=compute)
        )
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        self.jobs.append(job_id)
        return job_id

    def running(self, job_id: str) -> None:
        wait_for(self.client, job_id, {"running"})

    def reason(self, job_id: str, expected: str) -> None:
        """Waits until the scheduler has written ``expected`` as the job's pending reason."""
        deadline = time.monotonic() + 60  # a safety net against hangs, not an assertion
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/training/{job_id}").json()
            if job["status"] != "pending" or job.get("pending_reason") == expected:
                break
            time.sleep(0.05)
        assert job["status"] == "pending", job
        assert job["pending_reason"] == expected

    def usage(self) -> dict[str, Any]:
        body = self.client.get("/v1/quotas").json()
        return {item["name"]: item["usage"] for item in body["quotas"]}

    def cancel_all(self) -> None:
        for job_id in self.jobs:
            self.client.delete(f"/v1/jobs/training/{job_id}")
        for job_id in self.jobs:
            wait_for(self.client, job_id, {"cancelled", "failed", "succeeded"})


@pytest.fixture
def world(running_platform: Platform) -> Iterator[World]:
    made = World(running_platform)
    yield made
    made.cancel_all()


def test_gpu_quota_delays_and_usage_matches_what_runs(world: World) -> None:
    world.quota(max_gpus=2)
    first, second = world.submit(gpus=1), world.submit(cpu=2, memory=3, gpus=1)
    world.running(first)
    world.running(second)
    third = world.submit(gpus=1)
    world.reason(third, "tenant quota: 2 of 2 GPUs in use (this job needs 1)")
    usage = world.usage()
    assert usage["max_concurrent_jobs"] == 2
    assert usage["max_gpus"] == 2
    assert usage["max_cpu_cores"] == 3
    assert usage["max_memory_gb"] == 4
    assert usage["max_queued_jobs"] == 1
    # a raised quota is read by the next pass: the third job starts
    world.quota(max_gpus=3)
    world.running(third)
    assert world.usage()["max_gpus"] == 3


def test_concurrent_jobs_override(world: World) -> None:
    world.quota(max_concurrent_jobs=1)
    first = world.submit()
    world.running(first)
    second = world.submit()
    world.reason(second, "tenant quota: 1 of 1 concurrent jobs running")


def test_cpu_and_memory_quotas(world: World) -> None:
    world.quota(max_cpu_cores=3, max_memory_gb=10)
    first = world.submit(cpu=2, memory=2)
    world.running(first)
    over_cpu = world.submit(cpu=2, memory=1)
    world.reason(over_cpu, "tenant quota: 2 of 3 CPU cores in use (this job needs 2)")
    world.quota(max_cpu_cores=None, max_memory_gb=2.5)  # CPU back to the default (none)
    world.reason(over_cpu, "tenant quota: 2 of 2.5 GB memory in use (this job needs 1)")


def test_a_request_beyond_the_quota_waits_without_blocking_the_tenant(world: World) -> None:
    world.quota(max_memory_gb=4)
    too_big = world.submit(memory=5)
    world.reason(
        too_big,
        "tenant quota: needs 5 GB memory, more than the tenant's max_memory_gb of 4; "
        "waits until an administrator raises it",
    )
    small = world.submit(memory=1)  # behind it in the tenant's queue, and it starts
    world.running(small)


def test_another_tenant_is_not_held_by_this_quota(world: World) -> None:
    world.quota(max_concurrent_jobs=0)
    held = world.submit()
    world.reason(held, "tenant quota: 0 of 0 concurrent jobs running")
    other = World(world.platform)
    try:
        free = other.submit()
        other.running(free)
        assert other.usage()["max_concurrent_jobs"] == 1
        assert world.usage()["max_concurrent_jobs"] == 0
    finally:
        other.cancel_all()
