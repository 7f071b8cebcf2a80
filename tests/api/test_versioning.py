"""v1 deprecation headers, /v2 jobs (cursor pages, API-Date), over a real socket, both stores."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ml_platform.api.versioning import API_DATES, DEFAULT_API_DATE, V1_DEPRECATED_AT
from ml_platform.core.ids import new_id
from ml_platform.schemas.jobs import TrainingJob
from ml_platform.store.base import utcnow
from ml_platform.store.jobs import JobRepository
from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant, start_platform

STRUCTURED_DATE = re.compile(r"^@-?\d{1,15}$")  # RFC 9745 / RFC 9651 sf-date
DEPRECATION_LINK = '</docs/migrating-to-v2>; rel="deprecation"'


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text and "/work/" not in response.text
    return body


def _add_jobs(
    platform: Platform, tenant: Tenant, count: int, *, at: datetime | None = None, **fields: Any
) -> list[str]:
    """``count`` jobs straight into the store (``at``: all with that one timestamp)."""
    ids = []
    with platform.db.transaction() as session:
        repo = JobRepository(session, tenant.id)
        for i in range(count):
            body = spec(name=f"job-{i}", **fields)
            body["tenant_id"] = tenant.id
            record = repo.add(
                job_id=new_id("job"),
                name=body["name"],
                framework=body["framework"],
                spec=body,
                env_vars={},
                tags=body.get("tags", {}),
                created_by="test",
                created_at=at,
            )
            ids.append(record.id)
    return ids


def _page_all(
    client: httpx.Client, params: dict[str, Any], between: Any = None
) -> tuple[list[dict[str, Any]], int]:
    """Follow next_page_token to the end; returns every item and the number of pages."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        query = dict(params) | ({"page_token": token} if token else {})
        response = client.get("/v2/jobs/training", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items.extend(body["jobs"])
        token = body["next_page_token"]
        if token is None:
            assert "link" not in response.headers
            return items, pages
        # the Link header mirrors the cursor and keeps the query
        link = response.headers["link"]
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert match, link
        url = urlsplit(match.group(1))
        assert url.path == "/v2/jobs/training"
        linked = parse_qs(url.query)
        assert linked["page_token"] == [token]
        for key, value in params.items():
            assert linked[key] == [str(value)]
        if between is not None:
            between()


# -- v1 deprecation ---------------------------------------------------------------------------


def test_every_v1_response_carries_deprecation_and_link_and_no_sunset_by_default(
    platform: Platform, client: httpx.Client
) -> None:
    created = client.post("/v1/jobs/training", json=spec())
    responses = [
        created,
        client.get(f"/v1/jobs/training/{created.json()['id']}"),
        client.get("/v1/jobs/training"),
        client.get("/v1/jobs/training/job_missing"),  # a problem
        platform.client().get("/v1/jobs/training"),  # 401
        client.get("/v1/no-such-route"),  # the catch-all 404
    ]
    for response in responses:
        deprecation = response.headers["deprecation"]
        assert STRUCTURED_DATE.match(deprecation), deprecation
        when = datetime.fromtimestamp(int(deprecation[1:]), UTC)
        assert when == V1_DEPRECATED_AT
        assert DEPRECATION_LINK in response.headers["link"]
        assert "sunset" not in response.headers
    assert [r.status_code for r in responses] == [201, 200, 200, 404, 401, 404]


def test_v2_and_health_carry_no_deprecation(platform: Platform, client: httpx.Client) -> None:
    for response in (client.get("/v2/jobs/training"), platform.client().get("/healthz")):
        assert "deprecation" not in response.headers
        assert "sunset" not in response.headers


def test_the_deprecation_link_points_at_a_page_the_server_serves(platform: Platform) -> None:
    page = platform.client().get("/docs/migrating-to-v2")  # no key needed
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v2/jobs/training" in page.text and "page_token" in page.text
    for date in API_DATES:
        assert date in page.text


def test_sunset_is_an_http_date_once_an_administrator_sets_it(tmp_path: Path) -> None:
    sunset = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)
    running, server = start_platform(
        "sqlite", tmp_path, f"sqlite:///{tmp_path / 'mlp.db'}", v1_sunset=sunset
    )
    try:
        tenant = running.new_tenant("sunset")
        response = running.client(tenant).get("/v1/jobs/training")
        assert response.status_code == 200
        raw = response.headers["sunset"]
        assert raw.endswith(" GMT"), raw
        assert parsedate_to_datetime(raw) == sunset
        assert STRUCTURED_DATE.match(response.headers["deprecation"])
        # v2 never announces a sunset
        assert "sunset" not in running.client(tenant).get("/v2/jobs/training").headers
    finally:
        running.close()
        server.stop()
        running.db.dispose()


def test_a_naive_sunset_setting_is_taken_as_utc(tmp_path: Path) -> None:
    running, server = start_platform(
        "sqlite",
        tmp_path,
        f"sqlite:///{tmp_path / 'mlp.db'}",
        v1_sunset="2027-01-02T03:04:05",
    )
    try:
        raw = running.client().get("/v1/jobs/training").headers["sunset"]
        assert raw == "Sat, 02 Jan 2027 03:04:05 GMT"
        assert parsedate_to_datetime(raw) == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    finally:
        running.close()
        server.stop()
        running.db.dispose()


# -- one job, two shapes ----------------------------------------------------------------------


def test_v1_and_v2_return_the_same_job_in_their_own_shapes(client: httpx.Client) -> None:
    created = client.post("/v2/jobs/training", json=spec(tags={"team": "a"}))
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"/v2/jobs/training/{job['id']}"
    assert created.headers["api-date"] == DEFAULT_API_DATE

    v1 = client.get(f"/v1/jobs/training/{job['id']}").json()
    v2 = client.get(f"/v2/jobs/training/{job['id']}").json()
    assert set(v1) == set(TrainingJob.model_fields)  # v1: exactly the seed's shape
    assert "links" not in v1
    assert v2["links"] == {
        "self": f"/v2/jobs/training/{job['id']}",
        "logs": f"/v1/jobs/training/{job['id']}/logs",
        "metrics": f"/v1/jobs/training/{job['id']}/metrics",
        "metrics_history": f"/v1/jobs/training/{job['id']}/metrics/history",
    }
    assert {k: v for k, v in v2.items() if k != "links"} == v1
    assert client.get(v2["links"]["self"]).json() == v2

    v1_list = client.get("/v1/jobs/training").json()
    assert set(v1_list) == {"jobs", "total", "page", "page_size", "has_more"}
    v2_list = client.get("/v2/jobs/training").json()
    assert set(v2_list) == {"jobs", "next_page_token"}
    assert v2_list["jobs"] == [v2] and v1_list["jobs"] == [v1]

    assert client.delete(v2["links"]["self"]).status_code == 204
    assert client.get(f"/v1/jobs/training/{job['id']}").json()["status"] == "cancelled"


# -- cursor pages -----------------------------------------------------------------------------


def test_fifty_jobs_with_one_timestamp_paged_by_seven_no_duplicate_no_gap(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    ids = _add_jobs(platform, tenant, 50, at=utcnow() - timedelta(hours=1))
    items, pages = _page_all(client, {"page_size": 7})
    seen = [item["id"] for item in items]
    assert len(seen) == len(set(seen)) == 50
    assert seen == sorted(ids, reverse=True)  # created_at desc (all equal), then id desc
    assert pages == 8


def test_pages_are_newest_first_and_follow_the_filters(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    base = utcnow() - timedelta(days=1)
    tagged = []
    for minute in range(12):
        tagged += _add_jobs(
            platform,
            tenant,
            1,
            at=base + timedelta(minutes=minute),
            framework="pytorch" if minute % 2 else "sklearn",
            tags={"team": "x" if minute % 3 else "y"},
        )
    items, _ = _page_all(client, {"page_size": 2, "framework": "pytorch", "tags": "team=x"})
    expected = [tagged[m] for m in reversed(range(12)) if m % 2 and m % 3]
    assert [i["id"] for i in items] == expected
    assert all(i["spec"]["framework"] == "pytorch" for i in items)


def test_cursor_paging_visits_every_job_exactly_once_while_another_thread_inserts(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    existing = _add_jobs(platform, tenant, 40, at=utcnow() - timedelta(minutes=5))
    inserter = platform.client(tenant)
    inserted: list[str] = []
    wanted = threading.Semaphore(0)
    done = threading.Event()
    stop = threading.Event()
    failures: list[str] = []

    def insert_forever() -> None:
        # one job per page turn, plus more whenever it can: inserts race every page
        while not stop.is_set():
            wanted.acquire(timeout=0.05)
            if stop.is_set():
                break
            response = inserter.post("/v1/jobs/training", json=spec(name="racer"))
            if response.status_code != 201:
                failures.append(response.text)
                break
            inserted.append(response.json()["id"])
            done.set()

    def turn_page() -> None:
        done.clear()
        wanted.release()
        assert done.wait(30), "the inserter stalled"

    thread = threading.Thread(target=insert_forever, daemon=True)
    thread.start()
    try:
        turn_page()  # at least one job newer than the first page exists before it is read
        items, pages = _page_all(client, {"page_size": 3}, between=turn_page)
    finally:
        stop.set()
        wanted.release()
        thread.join(30)
    assert not failures, failures
    seen = [item["id"] for item in items]
    assert len(seen) == len(set(seen)), "a job was returned twice"
    assert pages >= 14 and len(inserted) >= pages
    for job_id in existing:
        assert seen.count(job_id) == 1, f"{job_id} missed"
    # every job the pages returned is ordered newest first
    keys = [(item["created_at"], item["id"]) for item in items]
    parsed = [(datetime.fromisoformat(c.replace("Z", "+00:00")), i) for c, i in keys]
    assert parsed == sorted(parsed, reverse=True)
    assert set(seen) - set(existing) <= set(inserted)


def test_a_token_reused_with_other_filters_is_400(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    _add_jobs(platform, tenant, 5, framework="pytorch")
    first = client.get("/v2/jobs/training", params={"page_size": 2, "framework": "pytorch"})
    token = first.json()["next_page_token"]
    assert token
    for other in (
        {"framework": "sklearn"},
        {},
        {"framework": "pytorch", "status": "pending"},
        {"framework": "pytorch", "tags": "a=b"},
    ):
        response = client.get("/v2/jobs/training", params={**other, "page_token": token})
        body = _problem(response, 400)
        assert body["code"] == "INVALID_ARGUMENT"
        assert "other filters" in body["detail"]
        assert body["errors"] == [
            {"path": "query.page_token", "message": "issued for a different query"}
        ]
    # page_size may change between pages; the same filters keep working
    same = client.get(
        "/v2/jobs/training", params={"framework": "pytorch", "page_size": 10, "page_token": token}
    )
    assert same.status_code == 200 and len(same.json()["jobs"]) == 3


def test_a_forged_or_foreign_token_is_400(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    _add_jobs(platform, tenant, 3)
    token = client.get("/v2/jobs/training", params={"page_size": 1}).json()["next_page_token"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (tampered, "not-a-token", "", "x" * 1024):
        body = _problem(client.get("/v2/jobs/training", params={"page_token": bad}), 400)
        assert body["errors"][0]["path"] == "query.page_token"
    too_long = client.get("/v2/jobs/training", params={"page_token": "x" * 1025})
    _problem(too_long, 422)
    # another tenant's token is tied to that tenant's query
    other = platform.client(platform.new_tenant("foreign"))
    _problem(other.get("/v2/jobs/training", params={"page_token": token}), 400)


# -- API-Date ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "date", ["2025-01-01", "yesterday", "2026-06-01T00:00:00Z", "\u00e9t\u00e9"]
)
def test_an_unknown_api_date_is_400_naming_the_known_ones(client: httpx.Client, date: str) -> None:
    response = client.get("/v2/jobs/training", headers=[(b"API-Date", date.encode())])
    body = _problem(response, 400)
    assert body["code"] == "INVALID_ARGUMENT"
    for known in API_DATES:
        assert known in body["detail"]
    assert body["errors"][0]["path"] == "header.API-Date"
    post = client.post("/v2/jobs/training", json=spec(), headers={"API-Date": "1999-01-01"})
    _problem(post, 400)
    assert client.get("/v1/jobs/training").json()["total"] == 0  # nothing was created


def test_api_date_is_echoed_and_the_default_is_documented(client: httpx.Client) -> None:
    assert client.get("/v2/jobs/training").headers["api-date"] == DEFAULT_API_DATE
    for date in API_DATES:
        response = client.get("/v2/jobs/training", headers={"API-Date": date})
        assert response.headers["api-date"] == date
    assert "api-date" not in client.get("/v1/jobs/training").headers


def test_from_2026_12_01_list_items_omit_status_history_unless_included(
    client: httpx.Client,
) -> None:
    job_id = client.post("/v2/jobs/training", json=spec()).json()["id"]
    assert client.delete(f"/v2/jobs/training/{job_id}").status_code == 204  # a real history

    def first_item(date: str | None, **params: str) -> dict[str, Any]:
        headers = {"API-Date": date} if date else {}
        response = client.get("/v2/jobs/training", params=params, headers=headers)
        assert response.status_code == 200, response.text
        item: dict[str, Any] = response.json()["jobs"][0]
        assert item["id"] == job_id
        return item

    old = first_item(None)
    assert [t["status"] for t in old["status_history"]][-1] == "cancelled"
    assert first_item("2026-06-01") == old
    lean = first_item("2026-12-01")
    assert "status_history" not in lean
    assert lean == {k: v for k, v in old.items() if k != "status_history"}
    assert first_item("2026-12-01", include="status_history") == old
    # get is unchanged by the date
    got = client.get(f"/v2/jobs/training/{job_id}", headers={"API-Date": "2026-12-01"})
    assert got.json()["status_history"] == old["status_history"]
    _problem(client.get("/v2/jobs/training", params={"include": "secrets"}), 422)
