"""Every domain error of ``core/errors.py``, raised through REST by a route that naturally
raises it, answers its status and problem ``code`` (API-GUIDE rule 7), on both stores.

Each row provokes the error the way a client would; the status must also be the one core's
single table gives for the code, so the route, the renderer and the table cannot drift.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ml_platform.core import errors
from ml_platform.core.errors import ErrorCode, PlatformError
from ml_platform.core.problems import PROBLEM_BASE, http_status
from ml_platform.server.app import create_app
from ml_platform.server.context import build_context
from tests.api.job_specs import spec
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, ServerThread, Tenant, make_settings


@dataclass
class World:
    platform: Platform
    tenant: Tenant
    other: Tenant
    client: httpx.Client
    anonymous: httpx.Client
    model: str
    unreachable_db_url: str

    def new_model(self) -> str:
        name = f"m-{secrets.token_hex(4)}"
        created = self.client.post("/v1/models", json={"name": name, "framework": "sklearn"})
        assert created.status_code == 201, created.text
        return name


@pytest.fixture(scope="module")
def unreachable_db_url() -> Iterator[str]:
    """A control plane whose database does not answer (port 1 refuses at once)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), "postgresql+psycopg://postgres@127.0.0.1:1/none")
        server = ServerThread(create_app(settings, build_context(settings)))
        yield server.start()
        server.stop()


@pytest.fixture
def world(platform: Platform, unreachable_db_url: str) -> World:
    tenant, other = platform.new_tenant("errors"), platform.new_tenant("other")
    client = platform.client(tenant)
    anonymous = platform.client()
    name = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": name, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, name)
    assert client.put(f"/v1/models/{name}/aliases/production", json={"version": 1}).is_success
    return World(platform, tenant, other, client, anonymous, name, unreachable_db_url)


def _invalid_tag_filter(w: World) -> httpx.Response:
    return w.client.get("/v1/jobs/training", params={"tags": "no-equals-sign"})


def _invalid_body(w: World) -> httpx.Response:
    return w.client.post("/v1/models", json={"name": "UPPER", "framework": "sklearn"})


def _no_credentials(w: World) -> httpx.Response:
    return w.anonymous.get("/v1/models")


def _other_tenants_job(w: World) -> httpx.Response:
    return w.client.post("/v1/jobs/training", json=spec(tenant_id=w.other.id))


def _missing_model(w: World) -> httpx.Response:
    return w.client.get("/v1/models/no-such-model")


def _duplicate_model(w: World) -> httpx.Response:
    return w.client.post("/v1/models", json={"name": w.model, "framework": "sklearn"})


def _cancel_twice(w: World) -> httpx.Response:
    job = w.client.post("/v1/jobs/training", json=spec())
    assert job.status_code == 201, job.text
    assert w.client.delete(f"/v1/jobs/training/{job.json()['id']}").status_code == 204
    return w.client.delete(f"/v1/jobs/training/{job.json()['id']}")


def _delete_deployed_model(w: World) -> httpx.Response:
    name = w.new_model()
    add_version_row(w.platform, w.tenant, name)
    created = w.client.post("/v1/deployments", json={"name": f"d-{name}", "model": name})
    assert created.status_code == 201, created.text
    return w.client.delete(f"/v1/models/{name}")


def _stale_if_match(w: World) -> httpx.Response:
    return w.client.put(
        f"/v1/models/{w.model}/aliases/production",
        json={"version": 1},
        headers={"If-Match": '"not-the-current-etag"'},
    )


def _unknown_api_date(w: World) -> httpx.Response:
    return w.client.get("/v2/jobs/training", headers={"API-Date": "1999-01-01"})


def _oversized_body(w: World) -> httpx.Response:
    limit = w.platform.settings.max_body_bytes
    return w.client.post("/v1/jobs/training", json=spec(entrypoint="x" * (limit + 1)))


def _xml_body(w: World) -> httpx.Response:
    return w.client.post("/v1/models", content=b"<m/>", headers={"content-type": "text/xml"})


def _zero_job_quota(w: World) -> httpx.Response:
    """An administrator sets the tenant's max_queued_jobs to 0: the next submit is refused."""
    name = f"ops-{secrets.token_hex(4)}"
    w.platform.context.auth.create_tenant(name)
    key = w.platform.context.auth.create_api_key(name, "ops", admin=True).plaintext
    admin = w.platform.client(Tenant(id="", name=name, api_key=key))
    quota = admin.patch(f"/v1/admin/tenants/{w.tenant.name}/quotas", json={"max_queued_jobs": 0})
    assert quota.status_code == 200, quota.text
    return w.client.post("/v1/jobs/training", json=spec())


def _database_down(w: World) -> httpx.Response:
    with httpx.Client(base_url=w.unreachable_db_url, timeout=30) as client:
        return client.get("/readyz")


@dataclass(frozen=True)
class Row:
    error: type[PlatformError]
    provoke: Callable[[World], httpx.Response]
    status: int
    code: ErrorCode


TABLE = [
    Row(errors.InvalidArgument, _invalid_tag_filter, 422, ErrorCode.INVALID_ARGUMENT),
    Row(errors.InvalidArgument, _invalid_body, 422, ErrorCode.INVALID_ARGUMENT),
    Row(errors.MalformedRequest, _unknown_api_date, 400, ErrorCode.INVALID_ARGUMENT),
    Row(errors.Unauthenticated, _no_credentials, 401, ErrorCode.UNAUTHENTICATED),
    Row(errors.PermissionDenied, _other_tenants_job, 403, ErrorCode.PERMISSION_DENIED),
    Row(errors.NotFound, _missing_model, 404, ErrorCode.NOT_FOUND),
    Row(errors.AlreadyExists, _duplicate_model, 409, ErrorCode.ALREADY_EXISTS),
    Row(errors.Conflict, _cancel_twice, 409, ErrorCode.CONFLICT),
    Row(errors.Conflict, _delete_deployed_model, 409, ErrorCode.CONFLICT),
    Row(errors.PreconditionFailed, _stale_if_match, 412, ErrorCode.PRECONDITION_FAILED),
    Row(errors.PayloadTooLarge, _oversized_body, 413, ErrorCode.PAYLOAD_TOO_LARGE),
    Row(errors.UnsupportedMediaType, _xml_body, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    Row(errors.QuotaExceeded, _zero_job_quota, 429, ErrorCode.QUOTA_EXCEEDED),
    Row(errors.Unavailable, _database_down, 503, ErrorCode.UNAVAILABLE),
]

NOT_RAISED_BY_V1_REST = {
    # no v1 route raises these today; core's renderer maps them (tests/api/test_problem_renderer)
    errors.ResourceExhausted: "no REST rate limit raises it yet",
    errors.DeadlineExceeded: "raised by the serving batcher (gRPC / V2), not the control plane",
    errors.InternalError: "only the catch-all answers it (tests/api/test_catch_all.py)",
}


def test_the_table_covers_every_domain_error() -> None:
    declared = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, PlatformError) and cls is not PlatformError
    }
    covered = {row.error for row in TABLE} | set(NOT_RAISED_BY_V1_REST)
    assert covered == declared, declared ^ covered
    assert not {row.error for row in TABLE} & set(NOT_RAISED_BY_V1_REST)


@pytest.mark.parametrize(
    "row", TABLE, ids=lambda row: f"{row.error.__name__}-{row.provoke.__name__.strip('_')}"
)
def test_domain_error_through_rest(world: World, row: Row) -> None:
    response = row.provoke(world)
    assert response.status_code == row.status, response.text
    # MalformedRequest is the one INVALID_ARGUMENT that REST answers 400 (bad syntax)
    malformed = issubclass(row.error, errors.MalformedRequest)
    expected = http_status(row.code, invalid_argument_status=400 if malformed else 422)
    assert row.status == expected, "the table disagrees with core.problems"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == row.status
    assert body["code"] == row.code.value
    assert body["type"] == PROBLEM_BASE + row.code.value.lower().replace("_", "-")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["detail"] and "Traceback" not in response.text
    if row.status == 401:
        assert "www-authenticate" in response.headers
