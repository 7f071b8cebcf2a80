"""Migration 0017 (issue 15): tag rows carry their job's status and framework, kept by triggers,
so tag-filtered pages and totals are cut from the tag indexes alone. Checked against a model of
the jobs with generated jobs, tags, status changes and deletes, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, text

from ml_platform.core.jobs import JobStatus
from ml_platform.store.base import UTCDateTime
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository, transition_job

pytestmark = pytest.mark.slow

FRAMEWORKS = ("sklearn", "xgboost")
TAG_VALUES = {"team": ("a", "b"), "project": ("x", "y", "z")}
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Job:
    id: str
    framework: str
    tags: dict[str, str]
    created_at: datetime
    status: JobStatus = JobStatus.PENDING


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, database_url_factory: Any) -> Iterator[Database]:
    db = Database(database_url_factory(request.param))
    db.upgrade()
    yield db
    db.dispose()


def _new_tenant(db: Database) -> str:
    tenant_id = f"t_{secrets.token_hex(6)}"
    with db.transaction() as session:
        session.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (:id, :id, :at)").bindparams(
                bindparam("at", type_=UTCDateTime())
            ),
            {"id": tenant_id, "at": START},
        )
    return tenant_id


def _expected(
    jobs: list[Job], status: JobStatus | None, framework: str | None, tags: dict[str, str]
) -> list[str]:
    matching = [
        j
        for j in jobs
        if (status is None or j.status is status)
        and (framework is None or j.framework == framework)
        and all(j.tags.get(k) == v for k, v in tags.items())
    ]
    matching.sort(key=lambda j: (j.created_at, j.id), reverse=True)
    return [j.id for j in matching]


job_specs = st.lists(
    st.tuples(
        st.sampled_from(FRAMEWORKS),
        st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in TAG_VALUES.items()}),
        # the status path: 0 stays pending, 1 running, 2 succeeded, 3 failed, 4 cancelled
        st.integers(0, 4),
        st.booleans(),  # changed through the store (True) or by a raw UPDATE (False)
        st.integers(0, 3),  # created minutes after the start: equal times exercise the id order
    ),
    min_size=1,
    max_size=12,
)
PATHS = {
    0: [],
    1: [JobStatus.RUNNING],
    2: [JobStatus.RUNNING, JobStatus.SUCCEEDED],
    3: [JobStatus.RUNNING, JobStatus.FAILED],
    4: [JobStatus.CANCELLED],
}
FILTER_TAGS = [
    {},
    {"team": "a"},
    {"project": "y"},
    {"team": "b", "project": "x"},
    {"project": "z", "team": "a"},
]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=job_specs, deleted=st.sets(st.integers(0, 11), max_size=3))
def test_tag_filtered_pages_and_totals_match_the_jobs(
    database: Database, specs: list[tuple[str, dict[str, str], int, bool, int]], deleted: set[int]
) -> None:
    tenant_id = _new_tenant(database)
    jobs: list[Job] = []
    with database.transaction() as session:
        repo = JobRepository(session, tenant_id)
        for n, (framework, tags, _, _, minutes) in enumerate(specs):
            job = Job(
                f"job_{tenant_id}_{n:02d}", framework, tags, START + timedelta(minutes=minutes)
            )
            repo.add(
                job_id=job.id,
                name=f"j{n}",
                framework=framework,
                spec={},
                env_vars={},
                tags=tags,
                created_by="me",
                created_at=job.created_at,
            )
            jobs.append(job)
    for job, (_, _, path, through_store, _) in zip(jobs, specs, strict=True):
        with database.transaction() as session:
            for target in PATHS[path]:
                if through_store:
                    transition_job(session, job.id, tenant_id=tenant_id, target=target)
                else:  # whatever code writes the jobs, the triggers keep the copies right
                    session.execute(
                        text("UPDATE jobs SET status = :s WHERE id = :id"),
                        {"s": target.value, "id": job.id},
                    )
                job.status = target
    with database.transaction() as session:
        for n in sorted(deleted):
            if n < len(jobs):  # the tag rows go with the job (ON DELETE CASCADE)
                session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": jobs[n].id})
    jobs = [j for n, j in enumerate(jobs) if n not in deleted]

    statuses: list[JobStatus | None] = [None, JobStatus.SUCCEEDED]
    with database.read() as session:
        repo = JobRepository(session, tenant_id)
        for status, framework, tags in itertools.product(statuses, [None, "xgboost"], FILTER_TAGS):
            expected = _expected(jobs, status, framework, tags)
            for offset in (0, 2, len(expected) + 1):
                page = repo.search(
                    status=status, framework=framework, tags=tags, offset=offset, limit=2
                )
                where = f"status={status} framework={framework} tags={tags} offset={offset}"
                assert page.total == len(expected), where
                assert [j.id for j in page.items] == expected[offset : offset + 2], where
            if tags:  # the keyset path walks the same index
                walked = repo.search_after(status=status, framework=framework, tags=tags, limit=50)
                assert [j.id for j in walked] == expected


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tag_rows_written_before_0017_get_their_jobs_status(
    backend: str, database_url_factory: Any
) -> None:
    db = Database(database_url_factory(backend))
    try:
        db.upgrade("0013_job_tag_order")
        with db.transaction() as session:
            session.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 't1', :at)"),
                {"at": START},
            )
            for n, (status, framework) in enumerate(
                [("running", "sklearn"), ("failed", "xgboost"), ("failed", "sklearn")]
            ):
                session.execute(
                    text(
                        "INSERT INTO jobs (id, tenant_id, name, framework, status, spec, env_vars,"
                        " created_by, created_at, updated_at, metrics) VALUES (:id, 't1', 'j',"
                        " :fw, :status, '{}', '{}', 'me', :at, :at, '{}')"
                    ).bindparams(bindparam("at", type_=UTCDateTime())),
                    {"id": f"job-{n}", "fw": framework, "status": status, "at": START},
                )
                session.execute(
                    text(
                        "INSERT INTO job_tags (job_id, key, value, tenant_id)"
                        " VALUES (:id, 'team', 'a', 't1')"
                    ),
                    {"id": f"job-{n}"},
                )
        db.upgrade()
        with db.read() as session:
            jobs = JobRepository(session, "t1")
            failed = jobs.search(status=JobStatus.FAILED, tags={"team": "a"})
            assert failed.total == 2
            assert {j.id for j in failed.items} == {"job-1", "job-2"}
            assert jobs.search(framework="sklearn", tags={"team": "a"}).total == 2
            running_xgboost = jobs.search(
                status=JobStatus.RUNNING, framework="xgboost", tags={"team": "a"}
            )
            assert running_xgboost.total == 0
    finally:
        db.dispose()
