"""Migration 0013 (issue 15): tag rows written before it get their job's created_at, so a
tag-filtered list of old jobs keeps the list order; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from ml_platform.store.base import UTCDateTime
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRepository

NAMES = {3: "job-a", 1: "job-c", 2: "job-b"}  # id order is the reverse of creation order


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tags_written_before_0013_are_listed_in_job_order(
    backend: str, database_url_factory: Any
) -> None:
    db = Database(database_url_factory(backend))
    try:
        db.upgrade("0001")
        with db.transaction() as session:
            session.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 't1', :at)"),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            for n in (3, 1, 2):  # inserted out of creation order
                at = datetime(2026, 1, n, tzinfo=UTC)
                session.execute(
                    text(
                        "INSERT INTO jobs (id, tenant_id, name, framework, status, spec, env_vars,"
                        " created_by, created_at, updated_at, metrics) VALUES (:id, 't1', 'j',"
                        " 'sklearn', 'pending', '{}', '{}', 'me', :at, :at, '{}')"
                    ).bindparams(bindparam("at", type_=UTCDateTime())),  # as the store writes
                    {"id": NAMES[n], "at": at},
                )
                session.execute(
                    text(
                        "INSERT INTO job_tags (job_id, key, value, tenant_id)"
                        " VALUES (:id, 'team', 'a', 't1')"
                    ),
                    {"id": NAMES[n]},
                )
        db.upgrade()
        with db.read() as session:
            jobs = JobRepository(session, "t1")
            page = jobs.search(tags={"team": "a"})
            assert [j.id for j in page.items] == ["job-a", "job-b", "job-c"]
            assert page.total == 3
            after = (page.items[0].created_at, page.items[0].id)
            assert [j.id for j in jobs.search_after(tags={"team": "a"}, after=after)] == [
                "job-b",
                "job-c",
            ]
    finally:
        db.dispose()
