"""A retry after the platform did the work (the answer was lost on the way back) creates
nothing new: the SDK resends the same Idempotency-Key and the platform replays its answer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.client._proxy import Fail, FailingProxy
from tests.client.conftest import done, make_client
from tests.client.test_retries_live import JOBS, SPEC, _assert_one_logical_call, _jobs_on_platform
from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow


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


async def test_a_retry_that_meets_its_own_first_attempt_in_flight_waits_and_gets_the_replay(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    """Attempt 0 reaches the platform but is still running when the SDK (told 503) retries:
    the platform answers 409 IDEMPOTENCY_KEY_IN_USE with ``x-should-retry: true`` and
    ``Retry-After: 1``; the SDK waits, retries, and receives the first attempt's job."""
    proxy.fail(Fail(status=503, headers={"Retry-After": "1"}, in_flight=True))
    client = make_client(kind, proxy.base_url, tenant.api_key, max_retries=3)
    try:
        job = await done(client.train(**SPEC))
    finally:
        await done(client.close())
    attempts = proxy.to("POST", JOBS)
    _assert_one_logical_call(attempts, 3)
    answers = [(status, headers) for path, status, headers in proxy.answers if path == JOBS]
    statuses = [status for status, _ in answers]
    assert sorted(statuses) == [201, 201, 409], statuses  # attempt 0 (held), 1, 2
    conflict = next(headers for status, headers in answers if status == 409)
    assert conflict.get("x-should-retry") == "true"
    assert attempts[2].at - attempts[1].at >= float(conflict.get("retry-after", "1"))
    replayed = [h for status, h in answers if status == 201 and h.get("idempotent-replayed")]
    assert len(replayed) == 1
    assert _jobs_on_platform(platform, tenant) == [job.id]


async def test_a_retried_multipart_upload_creates_one_version_and_a_put_is_resent_whole(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str, tmp_path: Path
) -> None:
    """Streamed uploads are re-read from disk on every attempt: the model version POST (a new
    multipart boundary each time) replays under its key; the data PUT lands whole."""
    artifact = tmp_path / "model.bin"  # a name that does not tell the format
    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1]))
    model.padding_ = np.arange(150_000, dtype=np.int64)  # ~1.2 MB: several upload chunks
    joblib.dump(model, artifact)
    client = make_client(kind, proxy.base_url, tenant.api_key)
    try:
        await done(client.models.create("uploaded"))
        versions = "/v1/models/uploaded/versions"
        proxy.fail(
            Fail(drop=True, after_forward=True),
            Fail(status=503, after_forward=True),
            method="POST",
            path=versions,
        )
        version = await done(
            client.models.upload(
                "uploaded", artifact, format="joblib", description="d", metadata={"run": 7}
            )
        )
        proxy.fail(Fail(drop=True), Fail(status=502), method="PUT")
        stored = await done(client.data.upload(artifact, "blobs/model.bin"))
        downloaded = await done(client.models.download("uploaded", 1, tmp_path / "back.bin"))
    finally:
        await done(client.close())
    _assert_one_logical_call(proxy.to("POST", versions), 3)
    assert (version.version, version.format, version.description) == (1, "joblib", "d")
    assert version.metadata["run"] == 7
    listed = platform.client(tenant).get("/v1/models/uploaded/versions").json()
    assert [v["version"] for v in listed["versions"]] == [1]
    assert downloaded.read_bytes() == artifact.read_bytes()
    assert len(proxy.to("PUT", "/v1/data/blobs/model.bin")) == 3
    assert stored.size_bytes == artifact.stat().st_size
    assert stored.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
