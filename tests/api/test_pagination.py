"""Pagination and every filter on 1,000 jobs, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ml_platform.core.ids import new_id
from ml_platform.core.jobs import JobStatus
from ml_platform.store.jobs import JobRepository
from tests.conftest import Platform, Tenant

FRAMEWORKS = ("pytorch", "tensorflow", "sklearn", "xgboost")
STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED)


@pytest.fixture(scope="module")
def loaded(platform: Platform) -> tuple[Tenant, list[dict[str, object]]]:
    """1,000 jobs with known frameworks, statuses, tags and timestamps (some equal)."""
    tenant = platform.new_tenant("page")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    jobs: list[dict[str, object]] = []
    with platform.db.transaction() as session:
        repo = JobRepository(session, tenant.id)
        for i in range(1000):
            tags = {"team": f"team-{i % 3}", "parity": "even" if i % 2 == 0 else "odd"}
            framework = FRAMEWORKS[i % 4]
            # groups of 50 share one timestamp, so ordering must fall back to the id
            created = base + timedelta(seconds=i // 50)
            job_id = new_id("job")
            spec = {
                "name": f"job-{i}",
                "framework": framework,
                "docker_image": "img",
                "data_path": "d",
                "output_path": "o",
                "tags": tags,
            }
            repo.add(
                job_id=job_id,
                name=f"job-{i}",
                framework=framework,
                spec=spec,
                env_vars={},
                tags=tags,
                created_by="seed",
                created_at=created,
            )
            status = STATUSES[i % 4]
            if status is JobStatus.SUCCEEDED:  # only a running job can succeed
                repo.transition(job_id, expected=[JobStatus.PENDING], target=JobStatus.RUNNING)
            if status is not JobStatus.PENDING:
                repo.transition(job_id, expected=STATUSES, target=status)
            jobs.append(
                {
                    "id": job_id,
                    "framework": framework,
                    "status": status.value,
                    "tags": tags,
                    "created": created,
                }
            )
    jobs.sort(key=lambda j: (j["created"], j["id"]), reverse=True)  # type: ignore[return-value]
    return tenant, jobs


def _all_pages(client: httpx.Client, page_size: int, **params: str) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        body = client.get(
            "/v1/jobs/training", params={**params, "page": page, "page_size": page_size}
        ).json()
        ids.extend(j["id"] for j in body["jobs"])
        assert body["page"] == page and body["page_size"] == page_size
        if not body["has_more"]:
            assert len(ids) == body["total"]
            return ids
        assert len(body["jobs"]) == page_size
        page += 1


def test_paging_by_7_has_no_gap_or_duplicate(
    platform: Platform, loaded: tuple[Tenant, list[dict[str, object]]]
) -> None:
    tenant, jobs = loaded
    client = platform.client(tenant)
    ids = _all_pages(client, 7)
    assert ids == [j["id"] for j in jobs]
    assert len(set(ids)) == 1000


def test_page_fields(platform: Platform, loaded: tuple[Tenant, list[dict[str, object]]]) -> None:
    tenant, jobs = loaded
    client = platform.client(tenant)
    last = client.get("/v1/jobs/training", params={"page": 2, "page_size": 500}).json()
    assert (last["total"], last["has_more"], len(last["jobs"])) == (1000, False, 500)
    beyond = client.get("/v1/jobs/training", params={"page": 3, "page_size": 500}).json()
    assert beyond["jobs"] == [] and beyond["total"] == 1000 and not beyond["has_more"]
    default = client.get("/v1/jobs/training").json()
    assert default["page_size"] == 50 and default["has_more"]
    assert [j["id"] for j in default["jobs"]] == [j["id"] for j in jobs[:50]]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "running"},
        {"framework": "xgboost"},
        {"tags": "team=team-1"},
        {"tags": "team=team-2,parity=odd"},
        {"status": "failed", "framework": "xgboost", "tags": "parity=odd"},
        {"status": "succeeded", "tags": "team=nobody"},
    ],
)
def test_filters_match_a_python_reference(
    platform: Platform, loaded: tuple[Tenant, list[dict[str, object]]], params: dict[str, str]
) -> None:
    tenant, jobs = loaded
    wanted_tags = dict(p.split("=") for p in params["tags"].split(",")) if "tags" in params else {}

    def keep(job: dict[str, object]) -> bool:
        tags = job["tags"]
        assert isinstance(tags, dict)
        return (
            ("status" not in params or job["status"] == params["status"])
            and ("framework" not in params or job["framework"] == params["framework"])
            and all(tags.get(k) == v for k, v in wanted_tags.items())
        )

    expected = [j["id"] for j in jobs if keep(j)]
    ids = _all_pages(platform.client(tenant), 97, **params)
    assert ids == expected
