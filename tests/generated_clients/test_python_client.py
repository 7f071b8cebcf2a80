"""The seed's "Generated client usage" snippet, run with the generated Python client.

The code is the seed's (api-design-for-ml-platforms.md, "Generating Client SDKs") with only the
host and the credential changed, plus the two fields the seed's own `TrainingJobSpec` requires
and its snippet omits (`framework`, `output_path`). It runs in a subprocess that imports
`ml_platform_client` from the committed `clients/python` (as `pip install` of it would), then
gets, lists and cancels the job and reads the problem body of a 422.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import Platform, Tenant
from tests.generated_clients.conftest import CLIENTS

SEED_SNIPPET = """
from ml_platform_client import ApiClient, Configuration, TrainingApi
from ml_platform_client.models import TrainingJobSpec

config = Configuration(host="{host}")
config.api_key['BearerAuth'] = "{token}"

client = ApiClient(configuration=config)
api = TrainingApi(client)

# Submit job using generated client
spec = TrainingJobSpec(
    name="my-model",
    framework="pytorch",
    docker_image="pytorch/pytorch:latest",
    data_path="s3://data/train.csv",
    output_path="s3://models/my-model/",
)

job = api.create_training_job(spec)
print(f"Job created: {{job.id}}, Status: {{job.status}}")
"""

AFTERWARDS = """
import json
from ml_platform_client.exceptions import UnprocessableEntityException
from ml_platform_client.models import InstanceConfig

fetched = api.get_training_job(job.id)
listed = api.list_training_jobs(page_size=10)
cancel_answer = api.cancel_training_job(job.id)  # DELETE: 204, no body
cancelled = api.get_training_job(job.id)
try:
    api.create_training_job(
        TrainingJobSpec(
            name="gpu-without-gpus",
            framework="pytorch",
            docker_image="pytorch/pytorch:latest",
            data_path="s3://data/train.csv",
            output_path="s3://models/my-model/",
            compute=InstanceConfig(compute_type="gpu", gpu_count=0),
        )
    )
    problem = None
except UnprocessableEntityException as error:
    problem = {
        "status": error.status,
        "headers": dict(error.headers or {}),
        "body": json.loads(error.body),
    }
print("RESULT " + json.dumps({
    "created": {"id": job.id, "status": job.status.value, "name": job.spec.name},
    "fetched": {
        "id": fetched.id, "status": fetched.status.value, "data_path": fetched.spec.data_path
    },
    "listed": {"ids": [item.id for item in listed.jobs], "total": listed.total},
    "cancel_answer": cancel_answer,
    "cancelled": {"id": cancelled.id, "status": cancelled.status.value},
    "problem": problem,
}))
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(CLIENTS / "python")}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_seed_snippet_with_the_generated_client(
    clients_platform: Platform, seed_tenant: Tenant
) -> None:
    snippet = SEED_SNIPPET.format(host=clients_platform.base_url, token=seed_tenant.api_key)
    run = _run(snippet + AFTERWARDS)
    assert run.returncode == 0, run.stderr[-3000:]
    first_line, *_ = run.stdout.splitlines()
    result = json.loads(run.stdout.split("RESULT ", 1)[1])

    created = result["created"]
    assert first_line == f"Job created: {created['id']}, Status: JobStatus.PENDING"
    assert created["id"].startswith("job_")
    assert created["status"] == "pending"
    assert created["name"] == "my-model"
    assert result["fetched"] == {
        "id": created["id"],
        "status": "pending",
        "data_path": "s3://data/train.csv",
    }
    assert result["listed"] == {"ids": [created["id"]], "total": 1}
    assert result["cancel_answer"] is None
    assert result["cancelled"] == {"id": created["id"], "status": "cancelled"}

    problem = result["problem"]
    assert problem is not None, "a GPU job without GPUs was accepted"
    assert problem["status"] == 422
    assert problem["headers"]["content-type"].startswith("application/problem+json")
    body = problem["body"]
    assert body["status"] == 422
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["request_id"]
    assert [error["path"] for error in body["errors"]] == ["body.compute.gpu_count"], body
    assert "gpu_count must be > 0" in body["errors"][0]["message"]


def test_a_wrong_credential_is_a_401_problem(clients_platform: Platform) -> None:
    snippet = SEED_SNIPPET.format(host=clients_platform.base_url, token="mlp_not-a-real-key")
    code = (
        "import json\nfrom ml_platform_client.exceptions import UnauthorizedException\ntry:\n"
        + "\n".join("    " + line for line in snippet.strip().splitlines())
        + "\nexcept UnauthorizedException as error:\n"
        + "    body = json.loads(error.body)\n"
        + "    print('RESULT ' + json.dumps({'status': error.status, 'body': body}))\n"
    )
    run = _run(code)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert result["status"] == 401
    assert result["body"]["status"] == 401
    assert "mlp_not-a-real-key" not in json.dumps(result["body"])
