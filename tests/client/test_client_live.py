"""The SDK against a real server on loopback (both stores): the seed's names and error classes."""

from __future__ import annotations

import inspect

import pytest

import ml_platform
from ml_platform import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    PermissionDeniedError,
    ResourceNotFoundError,
    ValidationError,
)
from tests.conftest import Platform, Tenant
from tests.ports import free_port

SPEC = {
    "name": "churn-sdk",
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/churn",
}


def _public(cls: type) -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(member).parameters)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_sync_and_async_clients_expose_the_same_methods_and_signatures() -> None:
    assert _public(Client) == _public(AsyncClient)
    for resource in ("jobs", "models", "deployments", "data"):
        sync_cls = type(getattr(Client(base_url="http://127.0.0.1:9", api_key="k"), resource))
        async_cls = type(getattr(AsyncClient(base_url="http://127.0.0.1:9", api_key="k"), resource))
        assert _public(sync_cls) == _public(async_cls), resource


def test_the_package_exports_the_seed_names_sorted() -> None:
    for name in ("Client", "AsyncClient", "TrainingJob", "Model", "Deployment"):
        assert name in ml_platform.__all__
    for name in ("MLPlatformError", "AuthenticationError", "ResourceNotFoundError"):
        assert issubclass(getattr(ml_platform, name), Exception)
    assert ml_platform.__all__ == sorted(ml_platform.__all__)


def test_submit_get_list_cancel_and_every_status_error(platform: Platform, tenant: Tenant) -> None:
    with Client(base_url=platform.base_url, api_key=tenant.api_key, max_retries=0) as client:
        job = client.train(**SPEC, hyperparameters={"epochs": 2}, tags={"team": "sdk"})
        assert job.status == "pending" and job.name == "churn-sdk"
        assert job.output_path is None
        again = client.get_job(job.id)
        assert again.id == job.id and again.created_at == job.created_at
        assert [j.id for j in client.list_jobs(status="pending")] == [job.id]
        job.cancel()
        assert job.status == "cancelled"

        with pytest.raises(ConflictError) as conflict:
            client.jobs.cancel(job.id)
        assert conflict.value.status_code == 409 and conflict.value.request_id
        with pytest.raises(ResourceNotFoundError) as missing:
            client.get_job("job_does_not_exist")
        assert missing.value.status_code == 404
        with pytest.raises(ValidationError) as invalid:
            client.train(**{**SPEC, "name": "Not Valid!"})
        assert invalid.value.status_code == 422
        with pytest.raises(PermissionDeniedError):
            client.train(**SPEC, tenant_id="someone-else")

    with (
        Client(base_url=platform.base_url, api_key="mlp_wrong", max_retries=0) as bad,
        pytest.raises(AuthenticationError),
    ):
        bad.list_jobs()


def test_a_closed_port_is_a_connection_error() -> None:
    port = free_port()  # nothing listens there
    with (
        Client(base_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0) as client,
        pytest.raises(APIConnectionError),
    ):
        client.list_jobs()


async def test_async_client_submits_and_pages(platform: Platform, tenant: Tenant) -> None:
    async with AsyncClient(base_url=platform.base_url, api_key=tenant.api_key) as client:
        job = await client.train(**SPEC)
        assert job.status == "pending"
        seen = [j.id async for j in client.jobs.list(page_size=1)]
        assert seen == [job.id]
        with pytest.raises(ResourceNotFoundError):
            await client.get_job("job_does_not_exist")
