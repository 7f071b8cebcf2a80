"""The seed's "SDK Usage Example", run as a user would run it, against a live platform.

The code below is the seed's (api-design-for-ml-platforms.md, "SDK Usage Example") with only
the values changed that must change here: URL and key, the framework and image, the data and
output paths, CPU instead of GPUs, and ``source_dir`` naming the example training code
(examples/sklearn_classifier, trained on the f0..f3 data of examples/make_dataset.py). It runs
in a subprocess and the test checks what its comments promise: a submitted job, waited for,
its model saved where asked, its metrics, and (changing only the data path or the timeout) the
failure branch printing the log tail and the timeout branch cancelling the job.
"""

from __future__ import annotations

import subprocess
import sys

from ml_platform import Client
from tests.conftest import Platform, Tenant
from tests.jobs.conftest import EXAMPLES, tenant_root

SEED_EXAMPLE = """
from ml_platform import Client

# Initialize client
client = Client(
    base_url="{base_url}",
    api_key="{api_key}"
)

# Simple training job submission
job = client.train(
    name="churn-prediction-v1",
    framework="sklearn",
    docker_image="python:3.11",
    data_path="{data_path}",
    output_path="models/churn/v1/",
    gpu_count=0,
    source_dir="{source_dir}",
    hyperparameters={{
        "learning_rate": 0.001,
        "batch_size": 64,
        "epochs": {epochs}
    }},
    tags={{
        "team": "ml-analytics",
        "project": "customer-retention"
    }}
)

print(f"Job submitted: {{job.id}}")
print(f"Status: {{job.status}}")

# Wait for completion
try:
    job.wait(timeout={timeout})  # 1 hour timeout
    print(f"Model saved to: {{job.output_path}}")
    print(f"Metrics: {{job.get_metrics()}}")
except TimeoutError:
    print("Job timed out")
    job.cancel()
except Exception as e:
    print(f"Job failed: {{e}}")
    logs = job.get_logs(tail=50)
    print(f"Last 50 log lines:\\n{{logs}}")
"""


def _dataset(platform: Platform, tenant: Tenant) -> str:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from make_dataset import make_dataset
    finally:
        sys.path.remove(str(EXAMPLES))
    make_dataset(tenant_root(platform, tenant) / "data" / "churn" / "train.csv", rows=400)
    return "data/churn/train.csv"


def _run(platform: Platform, tenant: Tenant, **values: object) -> str:
    code = SEED_EXAMPLE.format(
        base_url=platform.base_url,
        api_key=tenant.api_key,
        source_dir=EXAMPLES / "sklearn_classifier",
        **{"epochs": 100, "timeout": 3600, **values},
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line off a terminal, no warnings
    return result.stdout


def _job_id(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("Job submitted: job_"), stdout
    return first.removeprefix("Job submitted: ")


def test_the_seed_example_trains_waits_and_reports_the_model_and_metrics(
    job_platform: Platform,
) -> None:
    tenant = job_platform.new_tenant()
    stdout = _run(job_platform, tenant, data_path=_dataset(job_platform, tenant))
    lines = stdout.splitlines()
    job_id = _job_id(stdout)
    assert lines[1] == "Status: pending"
    assert lines[2] == "Model saved to: models/churn/v1/"
    assert lines[3].startswith("Metrics: {") and len(lines) == 4, stdout

    with Client(base_url=job_platform.base_url, api_key=tenant.api_key) as client:
        job = client.get_job(job_id)
        metrics = job.get_metrics()
        assert lines[3] == f"Metrics: {metrics}"
        assert set(metrics) == {"loss", "accuracy"} and 0.5 < metrics["accuracy"] <= 1.0
        assert job.status == "succeeded" and job.hyperparameters["epochs"] == 100
        assert job.tags == {"team": "ml-analytics", "project": "customer-retention"}
        saved = tenant_root(job_platform, tenant) / "models" / "churn" / "v1" / "model.joblib"
        assert saved.is_file()  # "Model saved to" is where the model is

        # and the quickstart's next step: register the job's model, get the same bytes back
        version = client.models.register("churn", job)
        assert version.version == 1
        signature = version.signature or {}
        assert [f["name"] for f in signature["input_features"]] == ["f0", "f1", "f2", "f3"]
        downloaded = client.models.download("churn", 1, job_platform.settings.data_dir / "dl/")
        assert downloaded.read_bytes() == saved.read_bytes()


def test_the_seed_example_prints_the_log_tail_when_the_job_fails(job_platform: Platform) -> None:
    tenant = job_platform.new_tenant()
    stdout = _run(job_platform, tenant, data_path="data/churn/missing.csv")
    job_id = _job_id(stdout)
    assert f"Job failed: job {job_id} failed:" in stdout
    tail = stdout.split("Last 50 log lines:\n", 1)[1]
    assert "Traceback" in tail and "missing.csv" in tail
    assert len(tail.splitlines()) <= 50


def test_the_seed_example_cancels_the_job_on_timeout(job_platform: Platform) -> None:
    tenant = job_platform.new_tenant()
    data_path = _dataset(job_platform, tenant)
    stdout = _run(job_platform, tenant, data_path=data_path, timeout=1, epochs=100_000)
    job_id = _job_id(stdout)
    assert stdout.splitlines()[2:] == ["Job timed out"]
    with Client(base_url=job_platform.base_url, api_key=tenant.api_key) as client:
        assert client.get_job(job_id).status == "cancelled"
