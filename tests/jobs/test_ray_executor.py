"""The Ray executor against a real Ray head on 127.0.0.1 (one start per test run)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest

from tests.conftest import Platform, start_platform
from tests.jobs.conftest import (
    EXAMPLES,
    JOB_SETTINGS,
    sse_events,
    submit,
    tenant_root,
    upload,
    wait_for,
    zip_dir,
    zip_files,
)
from tests.ray_head import ray_head as start_ray_head

sys.path.insert(0, str(EXAMPLES))
from make_dataset import make_dataset

RAY = Path(sys.executable).parent / "ray"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RAY.exists(), reason="Ray is not installed"),
]


# The Ray nodes' own object-store credentials (moto accepts any): the platform sends none.
NODE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ray-node-key",
    "AWS_SECRET_ACCESS_KEY": "ray-node-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    with start_ray_head("exec", env=NODE_CREDENTIALS) as address:
        yield address


@pytest.fixture(scope="module")
def ray_platform(
    ray_head: str, tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    running, server = start_platform(
        "sqlite",
        tmp_path_factory.mktemp("ray-data"),
        database_url_factory("sqlite"),
        **{**JOB_SETTINGS, "executor": "ray", "ray_address": ray_head},
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def test_sklearn_example_on_ray(ray_platform: Platform) -> None:
    tenant = ray_platform.new_tenant()
    client = ray_platform.client(tenant)
    root = tenant_root(ray_platform, tenant)
    make_dataset(root / "data" / "train.csv")
    package = upload(client, zip_dir(EXAMPLES / "sklearn_classifier"))
    job = submit(
        client,
        source=package,
        hyperparameters={"epochs": 4, "sleep_seconds": 0.5},
        output_path="models/ray/v1",
    )
    metrics_during_run: dict[str, float] = {}
    lines: list[str] = []
    end = None
    with client.stream(
        "GET", f"/v1/jobs/training/{job['id']}/logs", params={"follow": "true"}, timeout=300
    ) as response:
        for event in sse_events(response):
            if event.event == "log":
                lines.append(event.data["line"])
                if "epoch 2:" in event.data["line"] and not metrics_during_run:
                    metrics_during_run = client.get(f"/v1/jobs/training/{job['id']}/metrics").json()
            elif event.event == "end":
                end = event.data
                break
    assert end == {"status": "succeeded"}, "\n".join(lines)
    assert {"loss", "accuracy"} <= metrics_during_run.keys(), "\n".join(lines)
    assert not any(line.startswith("mlp-metric-") for line in lines)
    done = wait_for(client, job["id"], {"succeeded"})
    assert [h["status"] for h in done["status_history"]] == ["pending", "running", "succeeded"]
    model = joblib.load(root / "models" / "ray" / "v1" / "model.joblib")
    assert model.predict([[0.1, -0.2, 0.3, 0.0]]).shape == (1,)


def test_failure_and_cancel_on_ray(ray_platform: Platform) -> None:
    client = ray_platform.client(ray_platform.new_tenant())
    failing = submit(
        client,
        source=upload(
            client, zip_files({"train.py": "import sys\nprint('ray says hi')\nsys.exit(4)\n"})
        ),
    )
    sleeper = submit(client, entrypoint='python -c "import time; time.sleep(600)"')
    done = wait_for(client, failing["id"], {"failed", "succeeded"}, timeout=300)
    assert done["status"] == "failed"
    assert "code 4" in done["error_message"] and "ray says hi" in done["error_message"]
    wait_for(client, sleeper["id"], {"running"}, timeout=300)
    assert client.delete(f"/v1/jobs/training/{sleeper['id']}").status_code == 204
    wait_for(client, sleeper["id"], {"cancelled"})
    from ray.job_submission import JobStatus, JobSubmissionClient

    ray = JobSubmissionClient(ray_platform.settings.ray_address)
    while ray.get_job_status(sleeper["id"]) not in {JobStatus.STOPPED, JobStatus.FAILED}:
        pass


def test_a_starting_claim_stops_the_orphaned_ray_submission(ray_head: str, tmp_path: Path) -> None:
    """The server died after Ray accepted attempt 1 but before its answer was saved."""
    import asyncio

    from ray.job_submission import JobStatus, JobSubmissionClient

    from ml_platform.core.jobs import JobStatus as PlatformStatus
    from ml_platform.jobs.executors.ray import RayExecutor, submission_id_for
    from ml_platform.jobs.logs import LogStore

    job_id = f"job_orphan{os.getpid()}"
    ray = JobSubmissionClient(ray_head)
    ray.submit_job(
        entrypoint='python -c "import time; time.sleep(600)"',
        submission_id=submission_id_for(job_id, 1),
    )
    logs = LogStore(tmp_path / "jobs")
    executor = RayExecutor(
        address=ray_head, jobs_dir=tmp_path / "jobs", logs=logs, on_metrics=lambda *a: None
    )
    outcome = asyncio.run(executor.recover(job_id, {"state": "starting", "attempt": 1}))
    assert outcome is not None and outcome.status is PlatformStatus.FAILED
    assert "was stopped" in (outcome.error_message or "")
    while ray.get_job_status(job_id) not in {JobStatus.STOPPED, JobStatus.FAILED}:
        pass  # bounded by the test timeout; Ray stops the job within seconds
    never_ran = asyncio.run(executor.recover(f"{job_id}x", {"state": "starting", "attempt": 2}))
    assert never_ran is not None and "never ran" in (never_ran.error_message or "")


LAST_WORDS = """\
from ml_platform import runtime
for i in range(3000):
    print(f"line {i}")
runtime.log_metrics({"final": 7.0})
print("the last line")
"""


def test_lines_printed_just_before_the_end_are_stored_once_in_order(
    ray_platform: Platform,
) -> None:
    """The job finishes when Ray reports its end, without waiting for Ray to close the log
    stream: what the stream had not delivered yet comes from one read of the whole log, and
    no line is lost or stored twice (nor the metric printed last)."""
    client = ray_platform.client(ray_platform.new_tenant())
    job = submit(client, source=upload(client, zip_files({"train.py": LAST_WORDS})))
    done = wait_for(client, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done.get("error_message")
    response = client.get(f"/v1/jobs/training/{job['id']}/logs", params={"tail": 10000})
    output = [line["line"] for line in response.json()["logs"] if line["stream"] == "output"]
    # Ray writes its own lines too ("Runtime env is setting up."): keep the script's
    output = [line for line in output if line.startswith("line ") or line == "the last line"]
    assert output == [f"line {i}" for i in range(3000)] + ["the last line"]
    metrics = client.get(f"/v1/jobs/training/{job['id']}/metrics").json()
    assert metrics["final"] == 7.0


PUBLISHES = """\
from ml_platform import runtime
(runtime.output_dir() / "model.txt").write_text("trained on ray")
print("published")
"""


def test_a_ray_job_gets_no_storage_secret_and_still_publishes_to_s3(
    ray_head: str, tmp_path: Path
) -> None:
    """The storage's key and secret stay on the platform: Ray's own Job API shows the job's
    runtime_env without them (endpoint and region only), and the job, authenticating with
    the Ray node's environment, still publishes its outputs to the object store."""
    import asyncio
    import json
    import secrets

    from ray.job_submission import JobSubmissionClient

    from ml_platform.core.jobs import JobStatus as PlatformStatus
    from ml_platform.jobs.executors.base import JobLaunch
    from ml_platform.jobs.executors.ray import RayExecutor
    from ml_platform.jobs.logs import LogStore
    from ml_platform.storage import Storage
    from tests.s3_server import moto_s3

    key = "AKIA" + secrets.token_hex(8).upper()
    secret = "platform-secret-" + secrets.token_hex(16)
    (tmp_path / "moto").mkdir()
    with moto_s3(tmp_path / "moto") as s3:
        s3.bucket("ray-secrets")
        endpoint = s3.options["client_kwargs"]["endpoint_url"]
        options = {
            "key": key,
            "secret": secret,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        storage = Storage("s3://ray-secrets/root", options)
        code = tmp_path / "code"
        code.mkdir()
        (code / "train.py").write_text(PUBLISHES)
        logs = LogStore(tmp_path / "jobs")

        async def no_metrics(*_: Any) -> None:
            return None

        executor = RayExecutor(
            address=ray_head, jobs_dir=tmp_path / "jobs", logs=logs, on_metrics=no_metrics,
            storage=storage,
        )  # fmt: skip
        launch = JobLaunch(
            job_id=f"job_nosecret{os.getpid()}{secrets.token_hex(3)}",
            tenant_id="t1",
            entrypoint="python train.py",
            data_path=storage.uri("tenants/t1/data/train.csv"),
            output_path=storage.uri("tenants/t1/models/v1"),
            code_dir=code,
        )

        async def run() -> Any:
            await executor.start(launch)
            try:
                return await executor.wait(launch.job_id)
            finally:
                await executor.aclose()

        outcome = asyncio.run(run())
        lines = [line.text for line in logs.read_after(launch.job_id, 0)]
        assert outcome.status is PlatformStatus.SUCCEEDED, lines
        assert storage.get_bytes("tenants/t1/models/v1/model.txt") == b"trained on ray"
        info = JobSubmissionClient(ray_head).get_job_info(launch.job_id)
        shown = json.dumps(info.runtime_env)
        assert key not in shown and secret not in shown
        assert endpoint in shown  # what the worker needs to find the store still travels
