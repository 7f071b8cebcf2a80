"""A request larger than the node runs fitted to it (local executor), through a real platform.

The platform here believes it runs on a 2-core, 8 GB node; the seed's default compute asks
for 4 cores and 16 GB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ml_platform.jobs.scheduler import Capacity, fit_note, fitted
from tests.conftest import Platform, start_platform
from tests.jobs.conftest import JOB_SETTINGS, submit, wait_for

SMALL_NODE = {**JOB_SETTINGS, "node_cpu_cores": 2, "node_memory_gb": 8, "node_gpus": 0}
NOTE = "requested 4 CPU / 16 GB; this node has 2 CPU / 8 GB: running with 2 CPU / 8 GB"
BIG = {"cpu_cores": 4, "memory_gb": 16}
SLEEPER = 'python -c "import time; time.sleep(600)"'


def _platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any, **settings: object
) -> Iterator[Platform]:
    url = database_url_factory("sqlite")
    running, server = start_platform("sqlite", tmp_path_factory.mktemp("fit-data"), url, **settings)
    yield running
    running.close()
    server.stop()
    running.db.dispose()


@pytest.fixture(scope="module")
def small_node(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    yield from _platform(tmp_path_factory, database_url_factory, **SMALL_NODE)


@pytest.fixture(scope="module")
def small_node_no_fit(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    yield from _platform(tmp_path_factory, database_url_factory, **SMALL_NODE, fit_to_node=False)


def wait_for_reason(client: httpx.Client, job_id: str, prefix: str) -> dict[str, Any]:
    while True:  # bounded by the test timeout
        job: dict[str, Any] = client.get(f"/v1/jobs/training/{job_id}").json()
        if (job.get("pending_reason") or "").startswith(prefix):
            return job
        assert job["status"] == "pending", job


def log_lines(client: httpx.Client, job_id: str) -> list[str]:
    response = client.get(f"/v1/jobs/training/{job_id}/logs", params={"tail": 200})
    assert response.status_code == 200, response.text
    return [line["line"] for line in response.json()["logs"]]


def test_fit_note_caps_cpu_and_memory_but_never_gpus() -> None:
    node = Capacity(cpu_cores=2, memory_gb=8, gpus=0)
    assert fitted(Capacity(4, 16, 0), node) == Capacity(2, 8, 0)
    assert fitted(Capacity(1, 16, 0), node) == Capacity(1, 8, 0)
    assert fitted(Capacity(4, 16, 3), node).gpus == 3
    assert fit_note(Capacity(4, 16, 0), node) == NOTE
    assert fit_note(Capacity(2, 8, 0), node) is None


def test_seed_default_compute_runs_fitted_to_the_node(small_node: Platform) -> None:
    client = small_node.client(small_node.new_tenant())
    job = submit(client, entrypoint="python -c \"print('hello from a small node')\"", compute=BIG)
    done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    # The spec stays as submitted.
    again = client.get(f"/v1/jobs/training/{job['id']}").json()
    compute = again["spec"]["compute"]
    assert compute["cpu_cores"] == 4 and compute["memory_gb"] == 16
    # The status history and the log say what the job got.
    running = [h for h in again["status_history"] if h["status"] == "running"]
    assert len(running) == 1 and running[0]["reason"].endswith(f"fitted to this node: {NOTE}")
    lines = log_lines(client, job["id"])
    assert f"fitted to this node: {NOTE}" in lines
    assert "hello from a small node" in lines


def test_a_request_that_fits_is_not_fitted(small_node: Platform) -> None:
    client = small_node.client(small_node.new_tenant())
    job = submit(
        client, entrypoint="python -c \"print('ok')\"", compute={"cpu_cores": 1, "memory_gb": 1}
    )
    done = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    assert not any("fitted" in (h["reason"] or "") for h in done["status_history"])
    assert not any("fitted" in line for line in log_lines(client, job["id"]))


def test_a_fitted_job_waits_for_the_node_to_be_free(small_node: Platform) -> None:
    client = small_node.client(small_node.new_tenant())
    sleeper = submit(client, entrypoint=SLEEPER, compute={"cpu_cores": 1, "memory_gb": 1})
    wait_for(client, sleeper["id"], {"running"})
    big = submit(client, entrypoint="python -c \"print('ok')\"", compute=BIG)
    waiting = wait_for_reason(client, big["id"], "waiting for capacity")
    assert waiting["pending_reason"] == (
        f"waiting for capacity: needs 2 CPU cores (1 free), 8 GB memory (7 GB free) "
        f"(fitted to this node: {NOTE})"
    )
    assert client.delete(f"/v1/jobs/training/{sleeper['id']}").status_code == 204
    done = wait_for(client, big["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done


def test_more_gpus_than_the_node_stays_unschedulable(small_node: Platform) -> None:
    client = small_node.client(small_node.new_tenant())
    job = submit(client, compute={"compute_type": "gpu", "gpu_count": 1, **BIG})
    pending = wait_for_reason(client, job["id"], "waiting for")
    assert pending["pending_reason"] == "waiting for 1 GPU: this platform has 0 (unschedulable)"
    assert client.delete(f"/v1/jobs/training/{job['id']}").status_code == 204


def test_fit_to_node_off_keeps_a_big_request_unschedulable(small_node_no_fit: Platform) -> None:
    client = small_node_no_fit.client(small_node_no_fit.new_tenant())
    job = submit(client, entrypoint="python -c \"print('ok')\"", compute=BIG)
    pending = wait_for_reason(client, job["id"], "waiting for")
    assert pending["pending_reason"] == (
        "waiting for 4 CPU cores: this platform has 2 (unschedulable)"
    )
    assert client.delete(f"/v1/jobs/training/{job['id']}").status_code == 204
