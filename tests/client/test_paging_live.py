"""Auto-paginating lists through the SDK against a live platform: every item once, in the
platform's order, pages fetched lazily (seen at the proxy). Both clients."""

from __future__ import annotations

from pathlib import Path

from tests.client._proxy import FailingProxy
from tests.client.conftest import collect, done, make_client, write_script
from tests.conftest import Platform, Tenant

SPEC = {
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/paged",
}
POINTS = 2100  # the history's default page is 1000 points
METRICS = (
    "from ml_platform import runtime\n"
    f"for i in range({POINTS}):\n"
    "    runtime.log_metrics({'loss': 1.0 / (i + 1)}, step=i)\n"
)


async def test_jobs_list_follows_pages_lazily(
    platform: Platform, tenant: Tenant, proxy: FailingProxy, kind: str
) -> None:
    client = make_client(kind, proxy.base_url, tenant.api_key)
    try:
        created = [await done(client.train(name=f"paged-{i}", **SPEC)) for i in range(5)]
        listed = await collect(client.jobs.list(page_size=2))
        pages = len(proxy.to("GET", "/v1/jobs/training"))
        first_two = [j.id for j in await done(client.jobs.list(page_size=2).to_list(2))]
        newest = await done(client.list_jobs(limit=3))
    finally:
        await done(client.close())
    assert [j.id for j in listed] == [j.id for j in reversed(created)]  # newest first
    assert pages == 3  # 2 + 2 + 1
    assert first_two == [j.id for j in listed[:2]]
    # to_list(2) and list_jobs(limit=3) each stop at the page holding their last item
    assert len(proxy.to("GET", "/v1/jobs/training")) == pages + 1 + 1
    assert [j.id for j in newest] == [j.id for j in listed[:3]]


async def test_metric_history_follows_after_id_pages(
    job_platform: Platform, job_proxy: FailingProxy, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    client = make_client(kind, job_proxy.base_url, tenant.api_key)
    try:
        source = write_script(tmp_path, METRICS)
        job = await done(
            client.train(name="history", source_dir=source, cpu_cores=1, memory_gb=1, **SPEC)
        )
        await done(job.wait(polling_interval=0.1, timeout=120))
        points = await collect(job.metrics_history(name="loss"))
    finally:
        await done(client.close())
    assert [p.step for p in points] == list(range(POINTS))
    assert len({p.id for p in points}) == POINTS
    history = job_proxy.to("GET", f"/v1/jobs/training/{job.id}/metrics/history")
    assert len(history) == 3
