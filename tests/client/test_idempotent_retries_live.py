"""A retry after the platform did the work (the answer was lost on the way back) creates
nothing new: the SDK resends the same Idempotency-Key and the platform replays its answer."""

from __future__ import annotations

import pytest

from tests.client._proxy import Fail, FailingProxy
from tests.client.conftest import done, make_client
from tests.client.test_retries_live import JOBS, SPEC, _assert_one_logical_call, _jobs_on_platform
from tests.conftest import Platform, Tenant


@pytest.mark.parametrize(
    "failure",
    [Fail(status=503, after_forward=True), Fail(drop=True, after_forward=True)],
    ids=["503-after-work", "drop-after-work"],
)
async def test_a_retry_after_the_platform_did_the_work_replays_the_same_job(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str, failure: Fail
) -> None:
    """The platform created the job but the answer was lost: the retry carries the same
    Idempotency-Key and gets the stored answer, not a second job."""
    proxy.fail(failure, failure)
    client = make_client(kind, proxy.base_url, tenant.api_key)
    try:
        job = await done(client.train(**SPEC))
    finally:
        await done(client.close())
    _assert_one_logical_call(proxy.to("POST", JOBS), 3)
    assert _jobs_on_platform(platform, tenant) == [job.id]
