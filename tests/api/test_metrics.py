"""``/metrics`` on a live control plane, parsed with prometheus_client's own parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.api.job_specs import spec
from tests.conftest import Platform, start_platform

JOB_ROUTE = "/v1/jobs/training/{job_id}"


def scrape(client: httpx.Client) -> dict[str, list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: list(family.samples)
        for family in text_string_to_metric_families(response.text)
    }


def value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = family.removesuffix("_bucket")
    total = 0.0
    for sample in families.get(family, []):
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


def all_label_values(families: dict[str, list[Sample]]) -> set[str]:
    return {v for samples in families.values() for s in samples for v in s.labels.values()}


def test_requests_are_counted_by_route_template_never_by_raw_path(
    platform: Platform, client: httpx.Client
) -> None:
    created = client.post("/v1/jobs/training", json=spec())
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    before = scrape(client)
    for _ in range(3):
        assert client.get(f"/v1/jobs/training/{job_id}").status_code == 200
    assert client.get("/v1/jobs/training/job_doesnotexist0000").status_code == 404
    after = scrape(client)

    labels = {"method": "GET", "route": JOB_ROUTE, "api_version": "v1"}
    requests = "mlp_http_requests_total"
    assert (
        value(after, requests, status="200", **labels)
        - value(before, requests, status="200", **labels)
        == 3
    )
    assert (
        value(after, requests, status="404", **labels)
        - value(before, requests, status="404", **labels)
        == 1
    )
    latency = "mlp_http_request_duration_seconds_count"
    assert value(after, latency, **labels) - value(before, latency, **labels) == 4
    # the +Inf bucket holds every observation
    inf = value(after, "mlp_http_request_duration_seconds_bucket", le="+Inf", **labels)
    assert inf == value(after, latency, **labels)
    # the scrape itself is unversioned
    assert value(after, requests, route="/metrics", api_version="none", status="200") >= 1

    problems = "mlp_http_problems_total"
    not_found = {"route": JOB_ROUTE, "code": "NOT_FOUND", "api_version": "v1"}
    assert value(after, problems, **not_found) - value(before, problems, **not_found) == 1

    label_values = all_label_values(after)
    assert not any(job_id in v for v in label_values), "a raw job id leaked into a label"
    assert not any("doesnotexist" in v for v in label_values)


def test_unmatched_paths_share_one_label(platform: Platform, client: httpx.Client) -> None:
    before = scrape(client)
    for i in range(3):
        assert client.get(f"/v1/no-such-thing/scan{i}xyz").status_code == 404
    after = scrape(client)
    labels = {"method": "GET", "route": "unmatched", "status": "404", "api_version": "v1"}
    assert (
        value(after, "mlp_http_requests_total", **labels)
        - value(before, "mlp_http_requests_total", **labels)
        == 3
    )
    assert not any("xyz" in v for v in all_label_values(after))


def test_jobs_by_state_are_read_from_the_store(platform: Platform, client: httpx.Client) -> None:
    before = scrape(client)
    assert {s.labels["state"] for s in before["mlp_jobs"]} == {
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    }
    for _ in range(2):
        assert client.post("/v1/jobs/training", json=spec()).status_code == 201
    after = scrape(client)
    pending = value(after, "mlp_jobs", state="pending") - value(before, "mlp_jobs", state="pending")
    assert pending == 2
    # no tenant or principal in any label of the control plane's metrics
    assert not any(s.labels.get("tenant") for samples in after.values() for s in samples)


def test_metrics_responses_carry_a_request_id(platform: Platform) -> None:
    anonymous = platform.client()
    generated = anonymous.get("/metrics")
    assert generated.headers["x-request-id"].startswith("req_")
    echoed = anonymous.get("/metrics", headers={"X-Request-ID": "trace-metrics-1"})
    assert echoed.headers["x-request-id"] == "trace-metrics-1"


@pytest.fixture(scope="module")
def scheduling_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    running, server = start_platform(
        "sqlite",
        Path(tmp_path_factory.mktemp("metrics-sched")),
        database_url_factory("sqlite"),
        scheduler_enabled=True,
        scheduler_interval_seconds=0.1,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def test_scheduler_cycles_and_queue_wait(scheduling_platform: Platform) -> None:
    platform = scheduling_platform
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    before = scrape(client)
    # no data file exists: the job starts (queue wait observed) and then fails at launch
    created = client.post("/v1/jobs/training", json=spec())
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    waits = "mlp_job_queue_wait_seconds_count"
    cycles = "mlp_scheduler_cycles_total"
    deadline = time.monotonic() + 60  # a guard against hangs, not an assertion on time
    while True:
        after = scrape(client)
        started = client.get(f"/v1/jobs/training/{job_id}").json()["status"] != "pending"
        if (
            started
            and value(after, waits) > value(before, waits)
            and value(after, cycles) > value(before, cycles)
        ):
            break
        assert time.monotonic() < deadline, f"no start or no cycle observed: {after}"
        time.sleep(0.05)
    assert value(after, waits) - value(before, waits) == 1
    assert value(after, "mlp_job_queue_wait_seconds_sum") >= value(
        before, "mlp_job_queue_wait_seconds_sum"
    )


@pytest.fixture(scope="module")
def limited_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    running, server = start_platform(
        "sqlite",
        Path(tmp_path_factory.mktemp("metrics-limited")),
        database_url_factory("sqlite"),
        rate_limit_enabled=True,
        rate_limit_control="3/minute",
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def test_rate_limit_rejections_are_counted_by_problem_code(limited_platform: Platform) -> None:
    platform = limited_platform
    client = platform.client(platform.new_tenant())
    before = scrape(platform.client())  # /metrics is not rate limited (no credentials)
    statuses = [client.get("/v1/jobs/training").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    after = scrape(platform.client())
    labels = {"route": "/v1/jobs/training", "api_version": "v1"}
    problems = "mlp_http_problems_total"
    rejected = {"code": "RESOURCE_EXHAUSTED", **labels}
    assert value(after, problems, **rejected) - value(before, problems, **rejected) == 2
    requests = "mlp_http_requests_total"
    too_many = {"method": "GET", "status": "429", **labels}
    assert value(after, requests, **too_many) - value(before, requests, **too_many) == 2
