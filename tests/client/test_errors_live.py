"""Each exception class from a real platform response, for both clients, on both stores.

The proxy passes every request through untouched and records what the platform answered, so
the request id on a result or an exception is checked against the ``X-Request-ID`` the
platform actually sent (API-GUIDE rule 24).
"""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
    ResourceNotFoundError,
    ValidationError,
)
from ml_platform.client import FieldError
from tests.client._proxy import FailingProxy
from tests.client.conftest import done, make_client
from tests.conftest import Platform, Tenant
from tests.ports import free_port

SPEC: dict[str, Any] = {
    "name": "errors",
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/errors",
}


def _last_request_id(proxy: FailingProxy) -> str:
    return proxy.answers[-1][2]["x-request-id"]


async def test_every_status_class_from_the_platform_with_its_request_id(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    client = make_client(kind, proxy.base_url, tenant.api_key, max_retries=0)
    anonymous = make_client(kind, proxy.base_url, "mlp_not_a_key", max_retries=0)
    try:
        job = await done(client.train(**SPEC))
        assert job.request_id and job.request_id == _last_request_id(proxy)

        cases: list[tuple[type[APIStatusError], int, Any]] = [
            (AuthenticationError, 401, lambda: anonymous.get_job(job.id)),
            (PermissionDeniedError, 403, lambda: client.train(**SPEC, tenant_id="not-mine")),
            (ResourceNotFoundError, 404, lambda: client.get_job("job_nope")),
            (ResourceNotFoundError, 404, lambda: client.models.get("no-such-model")),
            (ValidationError, 422, lambda: client.train(**{**SPEC, "name": "Bad Name!"})),
        ]
        for cls, status, call in cases:
            with pytest.raises(cls) as raised:
                await done(call())
            error = raised.value
            assert type(error) is cls and error.status_code == status
            assert error.request_id == _last_request_id(proxy)
            assert error.body.get("status") == status and error.body.get("type")

        with pytest.raises(ValidationError) as invalid:
            await done(client.train(**{**SPEC, "name": "Bad Name!"}))
        assert [e.path for e in invalid.value.errors] == ["body.name"]
        assert all(isinstance(e, FieldError) and e.message for e in invalid.value.errors)

        await done(client.jobs.cancel(job.id))
        with pytest.raises(ConflictError) as twice:
            await done(client.jobs.cancel(job.id))
        assert twice.value.status_code == 409

        await done(client.models.create("dup"))
        with pytest.raises(ConflictError):
            await done(client.models.create("dup"))
    finally:
        await done(client.close())
        await done(anonymous.close())
    posts = proxy.to("POST", "/v1/models")
    assert len(posts) == 2  # a 409 is never retried
    assert len({a.headers["idempotency-key"] for a in posts}) == 2  # two logical calls


async def test_nothing_listening_is_a_connection_error(kind: str) -> None:
    port = free_port()  # nothing listens there
    client = make_client(kind, f"http://127.0.0.1:{port}", "k", max_retries=1)
    try:
        with pytest.raises(APIConnectionError) as refused:
            await done(client.get_job("job_x"))
    finally:
        await done(client.close())
    assert str(port) in str(refused.value)
