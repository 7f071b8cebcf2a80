"""Deleting a model races creating a deployment of it: exactly one wins, never an orphan.

The foreign key ``deployments (tenant_id, model) -> models (tenant_id, name)`` (migration 0006)
lets the database settle it. The PostgreSQL tests hold one side's transaction open while the
other side runs through REST, which is the interleaving that used to commit both.
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ml_platform.store.deployments import DeploymentRepository, DeploymentRow
from ml_platform.store.models import ModelRepository
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant


def _model_with_a_version(platform: Platform, tenant: Tenant, client: httpx.Client) -> str:
    name = f"m-{secrets.token_hex(4)}"
    created = client.post("/v1/models", json={"name": name, "framework": "sklearn"})
    assert created.status_code == 201, created.text
    add_version_row(platform, tenant, name)
    return name


def _deployments_of(platform: Platform, tenant: Tenant, model: str) -> list[str]:
    with platform.db.read() as session:
        return list(
            session.scalars(
                select(DeploymentRow.name).where(
                    DeploymentRow.tenant_id == tenant.id, DeploymentRow.model == model
                )
            )
        )


def _model_exists(client: httpx.Client, name: str) -> bool:
    status = client.get(f"/v1/models/{name}").status_code
    assert status in (200, 404)
    return status == 200


def test_deleting_a_deployed_model_is_409(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    name = _model_with_a_version(platform, tenant, client)
    created = client.post("/v1/deployments", json={"name": f"d-{name}", "model": name})
    assert created.status_code == 201, created.text
    response = client.delete(f"/v1/models/{name}")
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "CONFLICT"
    assert _model_exists(client, name)


def _in_thread(call: Any) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def test_delete_while_a_deployment_is_being_created_is_409(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    if platform.backend != "postgres":
        pytest.skip("SQLite has one writer at a time: the transactions cannot interleave")
    name = _model_with_a_version(platform, tenant, client)
    with platform.db.transaction() as session:
        DeploymentRepository(session, tenant.id).add(
            name=f"d-{name}",
            model=name,
            version=None,
            alias=None,
            max_batch_size=8,
            max_batch_delay_ms=1.0,
            created_by="test",
        )
        # the deletion's check runs now and sees no deployment: only the key can stop it
        thread, out = _in_thread(lambda: client.delete(f"/v1/models/{name}"))
        thread.join(timeout=1.0)  # it waits on the key's row lock (or, unfixed, has finished)
    thread.join(timeout=30)
    assert out, "the deletion did not return"
    assert out[0].status_code == 409, out[0].text
    assert out[0].json()["code"] == "CONFLICT"
    assert _model_exists(client, name)
    assert _deployments_of(platform, tenant, name) == [f"d-{name}"]


def test_create_while_the_model_is_being_deleted_is_refused(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    if platform.backend != "postgres":
        pytest.skip("SQLite has one writer at a time: the transactions cannot interleave")
    name = _model_with_a_version(platform, tenant, client)
    with platform.db.transaction() as session:
        repo = ModelRepository(session, tenant.id)
        model = repo.get(name)
        assert model is not None
        repo.delete(model.id)
        # the creation still sees the model and its version (uncommitted deletion)
        thread, out = _in_thread(
            lambda: client.post("/v1/deployments", json={"name": f"d-{name}", "model": name})
        )
        thread.join(timeout=1.0)
    thread.join(timeout=30)
    assert out, "the creation did not return"
    assert out[0].status_code == 422, out[0].text
    assert [e["path"] for e in out[0].json()["errors"]] == ["body.model"]
    assert not _model_exists(client, name)
    assert _deployments_of(platform, tenant, name) == []


def test_concurrent_delete_and_create_never_leave_an_orphan(
    platform: Platform, tenant: Tenant
) -> None:
    clients = [platform.client(tenant), platform.client(tenant)]

    def create(name: str, barrier: threading.Barrier) -> httpx.Response:
        barrier.wait()
        return clients[0].post("/v1/deployments", json={"name": f"d-{name}", "model": name})

    def delete(name: str, barrier: threading.Barrier) -> httpx.Response:
        barrier.wait()
        return clients[1].delete(f"/v1/models/{name}")

    for _ in range(8):
        name = _model_with_a_version(platform, tenant, clients[0])
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            created_future = pool.submit(create, name, barrier)
            deleted_future = pool.submit(delete, name, barrier)
            created, deleted = created_future.result(), deleted_future.result()
        assert created.status_code < 500, created.text
        assert deleted.status_code < 500, deleted.text
        outcome = (created.status_code, deleted.status_code)
        assert outcome in {(201, 409), (422, 204)}, (outcome, created.text, deleted.text)
        deployments = _deployments_of(platform, tenant, name)
        assert bool(deployments) == _model_exists(clients[0], name), "an orphan deployment"
