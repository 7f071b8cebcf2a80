"""Retries, idempotency keys, Retry-After and timeouts through a real failing proxy on loopback.

One suite for both clients (``kind``: sync and async), on both stores. The proxy records when
each attempt arrived and what it carried, so the assertions are about what the SDK sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform import (
    APITimeoutError,
    RateLimitError,
    ServerError,
    TrainingJob,
)
from tests.client._proxy import Fail, FailingProxy
from tests.client.conftest import done, make_client
from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = {
    "name": "retry-me",
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/retry",
}
JOBS = "/v1/jobs/training"


def _jobs_on_platform(platform: Platform, tenant: Tenant) -> list[str]:
    body = platform.client(tenant).get(JOBS, params={"page_size": 100}).json()
    return [job["id"] for job in body["jobs"]]


def _assert_one_logical_call(attempts: list[Any], count: int) -> None:
    assert len(attempts) == count
    keys = {a.headers.get("idempotency-key") for a in attempts}
    assert len(keys) == 1 and None not in keys, keys
    assert [a.headers.get("x-retry-count") for a in attempts] == [str(n) for n in range(count)]


DROP = Fail(drop=True)
UNAVAILABLE = Fail(status=503)


@pytest.mark.parametrize(
    "failures",
    [(UNAVAILABLE, UNAVAILABLE), (DROP, DROP), (UNAVAILABLE, DROP), (Fail(status=408), DROP)],
    ids=["503-503", "drop-drop", "503-drop", "408-drop"],
)
async def test_two_failures_then_one_job_and_one_idempotency_key(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str, failures: tuple[Fail, ...]
) -> None:
    proxy.fail(*failures)
    client = make_client(kind, proxy.base_url, tenant.api_key)
    try:
        job = await done(client.train(**SPEC))
    finally:
        await done(client.close())
    assert job.status == "pending"
    _assert_one_logical_call(proxy.to("POST", JOBS), 3)
    assert _jobs_on_platform(platform, tenant) == [job.id]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after-ms": "1500", "Retry-After": "1"}, 1.5),  # the ms field wins
        ({"retry-after-ms": "1200"}, 1.2),
    ],
    ids=["retry-after", "ms-first", "ms-only"],
)
async def test_retry_after_is_honoured_before_the_next_attempt(
    platform: Platform,
    tenant: Tenant,
    proxy: FailingProxy,
    kind: str,
    headers: dict[str, str],
    wait: float,
) -> None:
    # without the header the SDK's first backoff is <= 0.5 s: the gap proves it read the wait
    proxy.fail(Fail(status=429, headers=headers))
    client = make_client(kind, proxy.base_url, tenant.api_key)
    try:
        job = await done(client.train(**SPEC))
    finally:
        await done(client.close())
    attempts = proxy.to("POST", JOBS)
    _assert_one_logical_call(attempts, 2)
    assert attempts[1].at - attempts[0].at >= wait
    assert _jobs_on_platform(platform, tenant) == [job.id]


async def test_without_retries_429_and_503_surface_typed_errors(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    client = make_client(kind, proxy.base_url, tenant.api_key, max_retries=0)
    try:
        proxy.fail(Fail(status=429, headers={"Retry-After": "7"}))
        with pytest.raises(RateLimitError) as limited:
            await done(client.train(**SPEC))
        assert limited.value.status_code == 429 and limited.value.retry_after == 7.0

        proxy.fail(UNAVAILABLE)
        with pytest.raises(ServerError) as unavailable:
            await done(client.get_job("job_whatever"))
        assert unavailable.value.status_code == 503
    finally:
        await done(client.close())
    assert len(proxy.arrivals) == 2  # no retry of either
    assert _jobs_on_platform(platform, tenant) == []


async def test_with_options_sets_retries_per_call(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    client = make_client(kind, proxy.base_url, tenant.api_key, max_retries=0)
    try:
        proxy.fail(UNAVAILABLE)
        job = await done(client.with_options(max_retries=1).train(**SPEC))
        proxy.fail(UNAVAILABLE)
        with pytest.raises(ServerError):
            await done(client.get_job(job.id))  # the original keeps max_retries=0
    finally:
        await done(client.close())
    assert len(proxy.to("POST", JOBS)) == 2 and len(proxy.to("GET", JOBS)) == 1


async def test_the_server_can_forbid_a_retry_and_long_waits_raise_at_once(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    client = make_client(kind, proxy.base_url, tenant.api_key, max_retries=2)
    try:
        proxy.fail(Fail(status=503, headers={"x-should-retry": "false"}))
        with pytest.raises(ServerError):
            await done(client.train(**SPEC))
        assert len(proxy.arrivals) == 1

        proxy.fail(Fail(status=429, headers={"Retry-After": "120"}))
        with pytest.raises(RateLimitError) as limited:
            await done(client.train(**SPEC))
        assert limited.value.retry_after == 120.0
        assert len(proxy.arrivals) == 2
    finally:
        await done(client.close())
    assert _jobs_on_platform(platform, tenant) == []


async def test_a_stalled_answer_is_a_timeout_and_is_retried(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    # a timeout well above a loaded machine's answer, a stall well above the timeout
    client = make_client(kind, proxy.base_url, tenant.api_key, timeout=3.0, max_retries=0)
    try:
        proxy.fail(Fail(stall=60.0))
        with pytest.raises(APITimeoutError):
            await done(client.train(**SPEC))
        assert _jobs_on_platform(platform, tenant) == []

        proxy.fail(Fail(stall=60.0))
        job = await done(client.with_options(max_retries=1).train(**SPEC))
    finally:
        await done(client.close())
    _assert_one_logical_call(proxy.to("POST", JOBS)[1:], 2)
    assert _jobs_on_platform(platform, tenant) == [job.id]
    assert isinstance(job, TrainingJob) == (kind == "sync")
