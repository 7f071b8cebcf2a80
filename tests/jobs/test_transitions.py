"""The one status-transition function, against the real store on SQLite and PostgreSQL.

Every (from, to) pair of job statuses is tried: the pairs in ``ALLOWED_TRANSITIONS`` change
the status and write the status event in the same transaction; every other pair raises
``Conflict`` and changes nothing. A cancel through the API racing a completion ends with one
outcome.
"""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select, update

from ml_platform.core.errors import Conflict, NotFound
from ml_platform.core.ids import new_id
from ml_platform.core.jobs import ALLOWED_TRANSITIONS, TERMINAL_STATUSES, JobStatus
from ml_platform.schemas.jobs import TrainingJobSpec
from ml_platform.store.job_runtime import JobEventRow
from ml_platform.store.jobs import JobRepository, JobRow, transition_job
from tests.conftest import Platform, Tenant
from tests.jobs.conftest import job_body

PAIRS = list(itertools.product(JobStatus, JobStatus))


def make_job(platform: Platform, tenant: Tenant, status: JobStatus) -> str:
    """A job row put directly in ``status`` (test set-up, bypassing the transition)."""
    job_id = new_id("job")
    with platform.db.transaction() as session:
        JobRepository(session, tenant.id).add(
            job_id=job_id,
            name="t",
            framework="sklearn",
            spec=TrainingJobSpec.model_validate(job_body()).model_dump(mode="json"),
            env_vars={},
            tags={},
            created_by="test",
        )
        session.execute(update(JobRow).where(JobRow.id == job_id).values(status=status.value))
    return job_id


def status_and_events(platform: Platform, job_id: str) -> tuple[JobStatus, list[str]]:
    with platform.db.read() as session:
        status = session.scalar(select(JobRow.status).where(JobRow.id == job_id))
        events = list(
            session.scalars(
                select(JobEventRow.status)
                .where(JobEventRow.job_id == job_id)
                .order_by(JobEventRow.id)
            )
        )
    assert status is not None
    return JobStatus(status), events


def test_the_table_keeps_terminal_states_final() -> None:
    assert all(not ALLOWED_TRANSITIONS[s] for s in TERMINAL_STATUSES)
    assert JobStatus.SUCCEEDED not in ALLOWED_TRANSITIONS[JobStatus.PENDING]


@pytest.mark.parametrize(
    ("current", "target"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS]
)
def test_every_pair(
    platform: Platform, tenant: Tenant, current: JobStatus, target: JobStatus
) -> None:
    job_id = make_job(platform, tenant, current)
    allowed = target in ALLOWED_TRANSITIONS[current]
    if allowed:
        with platform.db.transaction() as session:
            transition_job(
                session, job_id, tenant_id=tenant.id, target=target, reason="test", attempt=1
            )
        assert status_and_events(platform, job_id) == (target, [target.value])
    else:
        with pytest.raises(Conflict) as caught, platform.db.transaction() as session:
            transition_job(session, job_id, tenant_id=tenant.id, target=target, reason="test")
        assert f"is {current.value}: it cannot become {target.value}" in caught.value.message
        assert status_and_events(platform, job_id) == (current, [])


def test_expected_narrows_the_sources(platform: Platform, tenant: Tenant) -> None:
    job_id = make_job(platform, tenant, JobStatus.RUNNING)
    with pytest.raises(Conflict), platform.db.transaction() as session:
        # running -> failed is allowed, but not when the caller expects a pending job
        transition_job(
            session,
            job_id,
            tenant_id=tenant.id,
            target=JobStatus.FAILED,
            expected=[JobStatus.PENDING],
        )
    assert status_and_events(platform, job_id) == (JobStatus.RUNNING, [])


def test_another_tenants_job_does_not_exist(platform: Platform, tenant: Tenant) -> None:
    other = platform.new_tenant()
    job_id = make_job(platform, other, JobStatus.PENDING)
    with pytest.raises(NotFound), platform.db.transaction() as session:
        transition_job(session, job_id, tenant_id=tenant.id, target=JobStatus.CANCELLED)
    assert status_and_events(platform, job_id) == (JobStatus.PENDING, [])


def test_cancel_through_the_api_records_its_event(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    job_id = make_job(platform, tenant, JobStatus.PENDING)
    assert client.delete(f"/v1/jobs/training/{job_id}").status_code == 204
    job = client.get(f"/v1/jobs/training/{job_id}").json()
    assert [h["status"] for h in job["status_history"]] == ["pending", "cancelled"]
    assert job["status_history"][-1]["reason"] == f"cancelled by {tenant.name}-key"
    assert status_and_events(platform, job_id) == (JobStatus.CANCELLED, ["cancelled"])


@pytest.mark.parametrize("completion_first", [True, False], ids=["complete-first", "cancel-first"])
def test_cancel_racing_completion_has_one_outcome(
    platform: Platform, tenant: Tenant, client: httpx.Client, completion_first: bool
) -> None:
    """The completion's transaction holds the row while the API's cancel arrives (or the
    reverse): whichever commits first wins, the other gets a Conflict, and the job ends
    with exactly one terminal status and one terminal event."""
    job_id = make_job(platform, tenant, JobStatus.RUNNING)
    responses: list[httpx.Response] = []

    def cancel() -> None:
        responses.append(client.delete(f"/v1/jobs/training/{job_id}"))

    canceller = threading.Thread(target=cancel)
    completion_error: Conflict | None = None
    if completion_first:
        with platform.db.transaction() as session:
            transition_job(
                session,
                job_id,
                tenant_id=tenant.id,
                target=JobStatus.SUCCEEDED,
                expected=[JobStatus.RUNNING],
                reason="the job's code exited 0",
                attempt=1,
            )
            canceller.start()
            # Not an assertion: give the cancel time to reach its UPDATE, which then waits for
            # this transaction's row lock (PostgreSQL) / write lock (SQLite).
            time.sleep(0.5)
        canceller.join()
    else:
        canceller.start()
        canceller.join()
        try:
            with platform.db.transaction() as session:
                transition_job(
                    session,
                    job_id,
                    tenant_id=tenant.id,
                    target=JobStatus.SUCCEEDED,
                    expected=[JobStatus.RUNNING],
                    reason="the job's code exited 0",
                    attempt=1,
                )
        except Conflict as exc:
            completion_error = exc
    (response,) = responses
    status, events = status_and_events(platform, job_id)
    terminal = [e for e in events if JobStatus(e).is_terminal]
    if completion_first:
        assert response.status_code == 409, response.text
        assert "succeeded" in response.json()["detail"]
        assert (status, terminal) == (JobStatus.SUCCEEDED, ["succeeded"])
    else:
        assert response.status_code == 204, response.text
        assert completion_error is not None
        assert (status, terminal) == (JobStatus.CANCELLED, ["cancelled"])


def test_concurrent_writers_one_wins(platform: Platform, tenant: Tenant) -> None:
    """Eight threads race every terminal transition from running: exactly one commits."""
    job_id = make_job(platform, tenant, JobStatus.RUNNING)
    barrier = threading.Barrier(8)
    won: list[JobStatus] = []
    lost: list[Conflict] = []
    targets = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING] * 2

    def race(target: JobStatus) -> None:
        barrier.wait()
        try:
            with platform.db.transaction() as session:
                transition_job(
                    session,
                    job_id,
                    tenant_id=tenant.id,
                    target=target,
                    expected=[JobStatus.RUNNING],
                )
            won.append(target)
        except Conflict as exc:
            lost.append(exc)

    threads = [threading.Thread(target=race, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 7
    status, events = status_and_events(platform, job_id)
    assert status is won[0] and events == [won[0].value]
    with platform.db.read() as session:
        count = session.scalar(
            select(func.count()).select_from(JobEventRow).where(JobEventRow.job_id == job_id)
        )
    assert count == 1
