"""Idempotency-Key on POST: replay, reuse, scope, concurrency, what is never stored.

Against the live control plane on both backends (the ``platform`` fixture), plus a small
ASGI app on loopback that puts the real middleware and store in front of routes that fail on
purpose (5xx, 429, exceptions) or block (in flight), and the store on its own.
"""

from __future__ import annotations

import io
import itertools
import json
import secrets
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ml_platform.api.idempotency import (
    IN_USE_CODE,
    MAX_KEY_LENGTH,
    REUSED_CODE,
    Fingerprint,
    IdempotencyMiddleware,
)
from ml_platform.api.middleware import RequestContextMiddleware
from ml_platform.store.base import Base
from ml_platform.store.idempotency import (
    Claim,
    Completed,
    IdempotencyKeyRow,
    IdempotencyStore,
    InFlight,
    StoredResponse,
)
from tests.api.job_specs import spec
from tests.conftest import Platform, ServerThread, Tenant

JOBS = "/v1/jobs/training"
REPLAYED = "idempotent-replayed"


def new_key() -> str:
    return "k-" + secrets.token_hex(12)


def job_count(client: httpx.Client) -> int:
    listed = client.get(JOBS)
    assert listed.status_code == 200, listed.text
    total: int = listed.json()["total"]
    return total


def rows_for_key(platform: Platform, key: str) -> int:
    with platform.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(IdempotencyKeyRow)
                .where(IdempotencyKeyRow.key == key)
            )
            or 0
        )


# -- the live control plane ----------------------------------------------------------------


def test_same_key_same_body_replays_the_first_response(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    key = new_key()
    first = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    second = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert job_count(client) == 1


def test_same_key_other_body_is_422_and_runs_nothing(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    key = new_key()
    assert client.post(JOBS, json=spec(), headers={"Idempotency-Key": key}).status_code == 201
    other = client.post(JOBS, json=spec(name="another"), headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")
    problem = other.json()
    assert problem["code"] == REUSED_CODE
    assert problem["status"] == 422
    assert "another request body" in problem["detail"]
    assert problem["errors"][0]["path"] == "header.Idempotency-Key"
    assert job_count(client) == 1


def test_keys_of_two_tenants_do_not_collide(platform: Platform) -> None:
    key = new_key()
    one, two = platform.client(platform.new_tenant()), platform.client(platform.new_tenant())
    a = one.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    b = two.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    assert (a.status_code, b.status_code) == (201, 201)
    assert REPLAYED not in b.headers
    assert a.json()["id"] != b.json()["id"]
    assert (job_count(one), job_count(two)) == (1, 1)


def test_one_key_on_two_routes_does_not_collide(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    key = new_key()
    job = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    model = client.post(
        "/v1/models",
        json={"name": "m-" + secrets.token_hex(3), "framework": "sklearn"},
        headers={"Idempotency-Key": key},
    )
    assert (job.status_code, model.status_code) == (201, 201), model.text
    assert REPLAYED not in model.headers
    assert model.json()["name"].startswith("m-")


def test_without_the_header_nothing_changes(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    responses = [client.post(JOBS, json=spec()) for _ in range(2)]
    assert [r.status_code for r in responses] == [201, 201]
    assert all(REPLAYED not in r.headers for r in responses)
    assert job_count(client) == 2


def test_non_post_requests_ignore_the_header(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    listed = client.get(JOBS, headers={"Idempotency-Key": "x" * 1000})
    assert listed.status_code == 200
    assert REPLAYED not in listed.headers


def test_failed_authentication_claims_nothing(platform: Platform, tenant: Tenant) -> None:
    key = new_key()
    anonymous = platform.client()
    wrong = platform.client(**{"X-API-Key": "mlp_" + "0" * 40})
    for client in (anonymous, wrong):
        response = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHENTICATED"
    # even an invalid key is the route's 401 first: nothing about keys leaks to strangers
    assert anonymous.post(JOBS, json=spec(), headers={"Idempotency-Key": ""}).status_code == 401
    assert rows_for_key(platform, key) == 0
    created = platform.client(tenant).post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    assert created.status_code == 201
    assert REPLAYED not in created.headers
    assert rows_for_key(platform, key) == 1


def test_bearer_tokens_take_part_too(platform: Platform, tenant: Tenant) -> None:
    token = platform.context.auth.issue_token(tenant.name, "ci", timedelta(minutes=5))
    client = platform.client(Authorization=f"Bearer {token}")
    key = new_key()
    first = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    second = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers[REPLAYED] == "true"
    assert job_count(platform.client(tenant)) == 1


@pytest.mark.parametrize(
    "value",
    [
        b"x" * (MAX_KEY_LENGTH + 1),
        "caf\u00e9".encode("latin-1"),
        b"tab\there",
        b"",
    ],
    ids=["too-long", "non-ascii", "control-character", "empty"],
)
def test_malformed_keys_are_422_naming_the_header(
    platform: Platform, tenant: Tenant, value: bytes
) -> None:
    client = platform.client(tenant)
    response = client.post(JOBS, json=spec(), headers={"Idempotency-Key": value})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "INVALID_ARGUMENT"
    assert "Idempotency-Key" in problem["detail"]
    assert problem["errors"][0]["path"] == "header.Idempotency-Key"
    assert job_count(client) == 0


def test_two_key_headers_are_422(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = client.post(JOBS, json=spec(), headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "header.Idempotency-Key"


def test_longest_and_oddest_valid_keys_work(platform: Platform, tenant: Tenant) -> None:
    client = platform.client(tenant)
    for key in ("y" * MAX_KEY_LENGTH, "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./ spaces inside"):
        first = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
        second = client.post(JOBS, json=spec(), headers={"Idempotency-Key": key})
        assert (first.status_code, second.status_code) == (201, 201)
        assert second.headers[REPLAYED] == "true"
    assert job_count(client) == 2


def test_fifty_concurrent_posts_with_one_key_create_one_job(
    platform: Platform, tenant: Tenant
) -> None:
    key = new_key()
    body = json.dumps(spec()).encode()
    barrier = threading.Barrier(50)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=platform.base_url, timeout=60) as client:
            barrier.wait()
            return client.post(
                JOBS,
                content=body,
                headers={
                    "X-API-Key": tenant.api_key,
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                },
            )

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    statuses = sorted({r.status_code for r in responses})
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code >= 500]
    created = [r for r in responses if r.status_code == 201]
    assert created, "no request got through"
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(REPLAYED not in r.headers for r in created) == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.headers["retry-after"] == "1"
        assert conflict.json()["code"] == IN_USE_CODE
    assert job_count(platform.client(tenant)) == 1


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", text)
    return buffer.getvalue()


def test_streamed_upload_route_replays_raw_and_multipart_bodies(
    platform: Platform, tenant: Tenant
) -> None:
    """Without a key the second upload of the same bytes is a 200; with one it is a replay."""
    client = platform.client(tenant)
    data = _zip(f"print({secrets.token_hex(4)!r})\n")
    key = new_key()
    raw = [
        client.post(
            "/v1/code-packages",
            content=data,
            headers={"Content-Type": "application/zip", "Idempotency-Key": key},
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in raw] == [201, 201], raw[0].text
    assert raw[1].headers[REPLAYED] == "true"
    assert raw[1].content == raw[0].content
    # multipart: httpx picks a new random boundary for every request, the key still matches
    key = new_key()
    form = [
        client.post(
            "/v1/code-packages",
            files={"file": ("code.zip", data, "application/zip")},
            headers={"Idempotency-Key": key},
        )
        for _ in range(2)
    ]
    assert form[0].status_code == 200  # the package exists since the raw upload
    assert form[1].status_code == 200
    assert form[1].headers[REPLAYED] == "true"
    other = client.post(
        "/v1/code-packages",
        files={"file": ("code.zip", _zip("print('other')\n"), "application/zip")},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 422
    assert other.json()["code"] == REUSED_CODE


def _sendable(raw: bytes) -> bytes:
    """``raw`` cut to what h11 lets a client send as a header value: tab, visible ASCII,
    space and obs-text, with no whitespace at either end (filtered first, then stripped:
    dropping a CR from ``b"0 \\r"`` leaves a trailing space)."""
    return bytes(b for b in raw if b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80).strip(b" \t")


KEY_BYTES = st.binary(max_size=300).map(_sendable)


@given(value=KEY_BYTES | st.text(max_size=300).map(lambda t: _sendable(t.encode("utf-8"))))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_keys_never_answer_5xx(platform: Platform, tenant: Tenant, value: bytes) -> None:
    client = platform.client(tenant)
    response = client.post(JOBS, json=spec(), headers={"Idempotency-Key": value})
    valid = 0 < len(value) <= MAX_KEY_LENGTH and all(0x20 <= b <= 0x7E for b in value)
    assert response.status_code == (201 if valid else 422), (value, response.text)
    assert response.headers["content-type"].startswith(
        "application/json" if valid else "application/problem+json"
    )


# -- the middleware in front of routes that fail or block ----------------------------------


@dataclass
class Script:
    """What the test route answers next, and how often it ran."""

    answers: list[Any] = field(default_factory=list)
    calls: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    proceed: threading.Event = field(default_factory=threading.Event)


@contextmanager
def serve_scripted(platform: Platform, store: IdempotencyStore) -> Iterator[tuple[str, Script]]:
    script = Script()

    async def flaky(request: Request) -> Response:
        await request.body()
        script.calls += 1
        answer = script.answers.pop(0)
        if answer == "raise":
            raise RuntimeError("boom")
        if answer == "block":
            script.started.set()
            while not script.proceed.is_set():
                await anyio.sleep(0.01)  # a blocking wait would hold the server's loop
            answer = 201
        return JSONResponse({"call": script.calls}, status_code=answer)

    async def bodiless(_request: Request) -> Response:
        script.calls += 1
        return JSONResponse({"call": script.calls}, status_code=201)

    # the production order: the catch-all outside, idempotency inside it, then the routes
    app = Starlette(
        routes=[
            Route("/flaky", flaky, methods=["POST"]),
            Route("/bodiless", bodiless, methods=["POST"]),
        ],
        middleware=[
            Middleware(RequestContextMiddleware, max_body_bytes=1024 * 1024),
            Middleware(IdempotencyMiddleware, auth=platform.context.auth, store=store),
        ],
    )
    server = ServerThread(app)
    base_url = server.start()
    try:
        yield base_url, script
    finally:
        script.proceed.set()
        server.stop()


@pytest.fixture
def scripted(platform: Platform) -> Iterator[tuple[str, Script]]:
    with serve_scripted(platform, IdempotencyStore(platform.db)) as served:
        yield served


@pytest.mark.parametrize("failure", [500, 503, 429, "raise"])
def test_5xx_429_and_exceptions_are_never_stored(
    scripted: tuple[str, Script], tenant: Tenant, failure: int | str
) -> None:
    base_url, script = scripted
    script.answers = [failure, 201]
    headers = {"X-API-Key": tenant.api_key, "Idempotency-Key": new_key()}
    with httpx.Client(base_url=base_url, headers=headers) as client:
        failed = client.post("/flaky", json={"a": 1})
        assert failed.status_code == (500 if failure == "raise" else failure)
        assert REPLAYED not in failed.headers
        retried = client.post("/flaky", json={"a": 1})
        assert retried.status_code == 201
        assert REPLAYED not in retried.headers
        replayed = client.post("/flaky", json={"a": 1})
        assert replayed.headers[REPLAYED] == "true"
        assert replayed.json() == retried.json() == {"call": 2}
    assert script.calls == 2


def test_4xx_answers_are_stored_and_replayed(scripted: tuple[str, Script], tenant: Tenant) -> None:
    base_url, script = scripted
    script.answers = [409, 201]
    headers = {"X-API-Key": tenant.api_key, "Idempotency-Key": new_key()}
    with httpx.Client(base_url=base_url, headers=headers) as client:
        first = client.post("/flaky", json={})
        again = client.post("/flaky", json={})
    assert (first.status_code, again.status_code) == (409, 409)
    assert again.headers[REPLAYED] == "true"
    assert script.calls == 1


def test_a_request_in_flight_answers_409_with_retry_after(
    scripted: tuple[str, Script], tenant: Tenant
) -> None:
    base_url, script = scripted
    script.answers = ["block"]
    headers = {"X-API-Key": tenant.api_key, "Idempotency-Key": new_key()}
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        httpx.Client(base_url=base_url, headers=headers, timeout=30) as client,
    ):
        first = pool.submit(client.post, "/flaky", json={"n": 1})
        assert script.started.wait(20)
        busy = client.post("/flaky", json={"n": 1})
        other_body = client.post("/flaky", json={"n": 2})
        script.proceed.set()
        done = first.result(timeout=30)
        after = client.post("/flaky", json={"n": 1})
    assert busy.status_code == other_body.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["code"] == IN_USE_CODE
    assert done.status_code == 201
    assert after.status_code == 201
    assert after.headers[REPLAYED] == "true"
    assert script.calls == 1


def _locked_until(platform: Platform, key: str) -> datetime:
    with platform.db.read() as session:
        value = session.scalar(
            select(IdempotencyKeyRow.locked_until).where(IdempotencyKeyRow.key == key)
        )
    assert value is not None
    return value


def test_a_running_request_keeps_renewing_its_claim(platform: Platform, tenant: Tenant) -> None:
    store = IdempotencyStore(platform.db, lease=timedelta(seconds=0.3))
    key = new_key()
    headers = {"X-API-Key": tenant.api_key, "Idempotency-Key": key}
    with (
        serve_scripted(platform, store) as (base_url, script),
        ThreadPoolExecutor(max_workers=1) as pool,
        httpx.Client(base_url=base_url, headers=headers, timeout=30) as client,
    ):
        script.answers = ["block"]
        first = pool.submit(client.post, "/flaky", json={})
        assert script.started.wait(20)
        initial = _locked_until(platform, key)
        deadline = time.monotonic() + 20
        while _locked_until(platform, key) <= initial:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.02)
        script.proceed.set()
        assert first.result(timeout=30).status_code == 201
    assert script.calls == 1


def test_a_route_that_never_reads_the_body_is_still_fingerprinted(
    scripted: tuple[str, Script], tenant: Tenant
) -> None:
    base_url, script = scripted
    headers = {"X-API-Key": tenant.api_key, "Idempotency-Key": new_key()}
    with httpx.Client(base_url=base_url, headers=headers) as client:
        first = client.post("/bodiless", content=b"one")
        same = client.post("/bodiless", content=b"one")
        other = client.post("/bodiless", content=b"two")
    assert first.status_code == same.status_code == 201
    assert same.headers[REPLAYED] == "true"
    assert other.status_code == 422
    assert script.calls == 1


# -- the store on its own ------------------------------------------------------------------


def _response(status: int = 201) -> StoredResponse:
    return StoredResponse(
        fingerprint="f" * 64,
        request_bytes=3,
        status=status,
        headers=[("content-type", "application/json")],
        body=b"{}",
    )


def test_store_claims_once_and_release_lets_a_retry_run(platform: Platform, tenant: Tenant) -> None:
    store = IdempotencyStore(platform.db)
    key = new_key()
    first = store.claim(tenant.id, "POST", "/x", key)
    assert isinstance(first, Claim)
    assert isinstance(store.claim(tenant.id, "POST", "/x", key), InFlight)
    store.release(first)  # what a 5xx or 429 does
    again = store.claim(tenant.id, "POST", "/x", key)
    assert isinstance(again, Claim)
    assert store.complete(again, _response())
    done = store.claim(tenant.id, "POST", "/x", key)
    assert isinstance(done, Completed)
    assert done.response == _response()
    assert isinstance(store.claim(tenant.id, "POST", "/y", key), Claim)
    assert not store.complete(first, _response(200))  # a stale claim cannot overwrite


def test_store_expired_rows_are_taken_over_and_purged(platform: Platform, tenant: Tenant) -> None:
    expired = IdempotencyStore(platform.db, ttl=timedelta(0), purge_interval_seconds=3600)
    key = new_key()
    old = expired.claim(tenant.id, "POST", "/x", key)
    assert isinstance(old, Claim)
    assert expired.complete(old, _response())
    fresh = expired.claim(tenant.id, "POST", "/x", key)
    assert isinstance(fresh, Claim)
    assert fresh.token != old.token
    assert not expired.complete(old, _response(200))
    assert expired.purge_expired() >= 1
    assert rows_for_key(platform, key) == 0


def test_store_abandoned_in_flight_claims_are_taken_over(
    platform: Platform, tenant: Tenant
) -> None:
    store = IdempotencyStore(platform.db, lease=timedelta(0))
    key = new_key()
    crashed = store.claim(tenant.id, "POST", "/x", key)
    assert isinstance(crashed, Claim)
    retry = store.claim(tenant.id, "POST", "/x", key)
    assert isinstance(retry, Claim)
    assert retry.row_id == crashed.row_id and retry.token != crashed.token
    assert not store.extend(crashed)  # the crashed server's claim is gone for good
    renewing = IdempotencyStore(platform.db, lease=timedelta(hours=1))
    assert renewing.extend(retry)
    assert isinstance(store.claim(tenant.id, "POST", "/x", key), InFlight)
    assert renewing.complete(retry, _response())
    assert not renewing.extend(retry)  # completed rows have no lease to renew


def test_migration_0005_matches_the_table(platform: Platform) -> None:
    with platform.db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if "idempotency_keys" in repr(d)] == []


# -- the fingerprint -----------------------------------------------------------------------


@given(body=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_fingerprint_does_not_depend_on_chunking(body: bytes, cuts: list[int]) -> None:
    content_type = "multipart/form-data; boundary=ab"
    whole = Fingerprint(content_type, b"")
    whole.update(body)
    split = Fingerprint(content_type, b"")
    edges = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    for start, end in itertools.pairwise(edges):
        split.update(body[start:end])
    assert split.hexdigest() == whole.hexdigest()
    assert split.size == whole.size == len(body)


def test_fingerprint_ignores_the_boundary_but_not_the_content() -> None:
    def digest(content_type: str, body: bytes, query: bytes = b"") -> str:
        fingerprint = Fingerprint(content_type, query)
        fingerprint.update(body)
        return fingerprint.hexdigest()

    a = digest('multipart/form-data; boundary="AAAA"', b"--AAAA\r\nx\r\n--AAAA--")
    b = digest("multipart/form-data; boundary=BBBBBB", b"--BBBBBB\r\nx\r\n--BBBBBB--")
    assert a == b
    assert a != digest("multipart/form-data; boundary=BBBB", b"--BBBB\r\ny\r\n--BBBB--")
    assert digest("application/json", b"{}") != digest("text/plain", b"{}")
    assert digest("application/json", b"{}") != digest("application/json", b"{}", b"q=1")
    assert digest("application/json", b"{}") == digest("Application/JSON", b"{}")
