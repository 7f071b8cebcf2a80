"""The user's loop on a scale-out install, nothing shared but the services: PostgreSQL (the
machine's), Redis (the machine's), an S3 API (moto_server) as the one storage, two
``mlp server --no-serving`` replicas with their own data dirs (one wins the scheduler lease)
and one ``mlp serve`` with a third, empty data dir.

Through replica 1: upload the example's code and data. Through replica 2: submit, follow the
logs by SSE, wait, register the job's model, deploy it. ``mlp serve`` answers Predict. Then
the scheduler replica is killed and a second job runs to success under the other one. No step
reads another replica's disk: each data dir is checked to hold no blob at the end.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from ml_platform.config import Settings
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from ml_platform.store.db import Database
from tests.conftest import TEST_JWT_SECRET
from tests.jobs.conftest import sse_events, zip_dir
from tests.ports import free_port
from tests.ray_head import ray_head
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sklearn_classifier"
sys.path.insert(0, str(ROOT / "examples"))
from make_dataset import make_dataset  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Replica:
    name: str
    data_dir: Path
    process: subprocess.Popen[str]
    base_url: str

    def client(self, api_key: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": api_key}, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr or ""


def _env(
    database_url: str, storage_uri: str, s3: S3, secrets_key: str, data_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(data_dir),
        "ML_PLATFORM_CONFIG_DIR": str(data_dir / "config"),
        "ML_PLATFORM_DATABASE_URL": database_url,
        "ML_PLATFORM_STORAGE_URI": storage_uri,
        "ML_PLATFORM_STORAGE_OPTIONS": json.dumps(s3.options),
        "ML_PLATFORM_REDIS_URL": REDIS_URL,
        "ML_PLATFORM_JWT_SECRET": TEST_JWT_SECRET,
        "ML_PLATFORM_SECRETS_KEY": secrets_key,
        # Long enough that a CI machine's stalls (both xdist workers, Ray, moto and three
        # servers on 2 cores) do not lapse a live holder's lease: a lapse while a job is
        # starting makes the next holder reconcile that starting claim by stopping it.
        "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "10",
        "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2",
        "ML_PLATFORM_SERVING_SOURCE_POLL_SECONDS": "0.2",
        "ML_PLATFORM_FIT_TO_NODE": "true",
    }


def _spawn_replica(name: str, env: dict[str, str]) -> Replica:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_platform.cli.main", "server", "--no-serving",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Replica(name, Path(env["ML_PLATFORM_DATA_DIR"]), process, f"http://127.0.0.1:{port}")


def _ready(replica: Replica) -> Replica:
    name, process = replica.name, replica.process
    deadline = time.monotonic() + 240  # a safety net against hangs (a loaded CI machine)
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {replica.stop()}")
        try:
            if httpx.get(f"{replica.base_url}/healthz", timeout=2).status_code == 200:
                return replica
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not start: {replica.stop()}")
        time.sleep(0.1)


def _lease_holder_pid(db: Database) -> int | None:
    with db.read() as session:
        holder = session.execute(
            text("SELECT holder, expires_at > CURRENT_TIMESTAMP FROM scheduler_leases")
        ).first()
    if holder is None or not holder[1]:
        return None
    return int(str(holder[0]).split(":")[1])


def _wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout  # a safety net against hangs, not an assertion
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/training/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _submit(client: httpx.Client, package: str, output: str) -> str:
    response = client.post(
        "/v1/jobs/training",
        json={
            "name": "churn", "framework": "sklearn", "docker_image": "python:3.11",
            "entrypoint": "python train.py",
            "source": package, "data_path": "data/train.csv", "output_path": output,
            "hyperparameters": {"epochs": 3}, "compute": {"cpu_cores": 1, "memory_gb": 1},
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


@contextmanager
def _serving(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    grpc_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_platform.cli.main", "serve", "--grpc-port", str(grpc_port),
         "--serving-rest-port", str(free_port()), "--workers", "1", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield process, grpc_port
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        assert "Traceback" not in (stderr or ""), stderr


def _blobs(data_dir: Path) -> list[str]:
    """Files in a replica's data dir that would be platform blobs (there must be none)."""
    names = ("code-packages", "artifacts", "tenants")
    return sorted(
        str(p.relative_to(data_dir))
        for name in names
        if (data_dir / name).exists()
        for p in (data_dir / name).rglob("*")
        if p.is_file()
    )


def ray_node_credentials(s3: S3) -> dict[str, str]:
    """What the Ray nodes authenticate to the object store with: their own environment (the
    platform sends only the storage's endpoint and region in a job's runtime_env)."""
    return {
        "AWS_ACCESS_KEY_ID": str(s3.options["key"]),
        "AWS_SECRET_ACCESS_KEY": str(s3.options["secret"]),
        "AWS_DEFAULT_REGION": str(s3.options["client_kwargs"]["region_name"]),
    }


@pytest.fixture
def executor_env(request: pytest.FixtureRequest, s3: S3) -> Iterator[dict[str, str]]:
    """The executor settings of the replicas; for Ray, a head of this test's own (stopped by
    its pid, so other tests' Ray clusters are left alone) with the S3 credentials in its
    environment."""
    if request.param == "local":
        yield {"ML_PLATFORM_EXECUTOR": "local"}
        return
    with ray_head("loop", env=ray_node_credentials(s3)) as address:
        yield {"ML_PLATFORM_EXECUTOR": "ray", "ML_PLATFORM_RAY_ADDRESS": address}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("executor_env", ["local", "ray"], indirect=True)
def test_two_replicas_and_a_serving_host_share_nothing_but_the_services(
    tmp_path: Path, s3: S3, database_url_factory: Any, executor_env: dict[str, str]
) -> None:
    database_url = database_url_factory("postgres")
    storage_uri = f"s3://{BUCKET}/loop-{tmp_path.name}"
    secrets_key = Fernet.generate_key().decode()
    dirs = [tmp_path / name for name in ("replica-1", "replica-2", "serving")]
    envs = [_env(database_url, storage_uri, s3, secrets_key, d) for d in dirs]
    for env in envs:
        env.update(executor_env)

    settings = Settings(
        data_dir=tmp_path / "admin", database_url=database_url, jwt_secret=TEST_JWT_SECRET
    )
    db = Database(settings.resolved_database_url)
    db.upgrade()
    from ml_platform.auth.service import AuthService
    from ml_platform.auth.tokens import TokenCodec

    auth = AuthService(db, TokenCodec(TEST_JWT_SECRET))
    auth.create_tenant("loop")
    api_key = auth.create_api_key("loop", "loop-key").plaintext

    replicas = [_spawn_replica(f"replica-{i}", envs[i - 1]) for i in (1, 2)]
    replica_1, replica_2 = replicas
    try:
        for replica in replicas:  # both start at once; one of them takes the lease
            _ready(replica)
        _wait("a replica to take the scheduler lease", lambda: _lease_holder_pid(db))
        holder = _lease_holder_pid(db)
        scheduler = next(r for r in replicas if r.process.pid == holder)
        other = next(r for r in replicas if r is not scheduler)
        one, two = replica_1.client(api_key), replica_2.client(api_key)

        # through replica 1: the example's code and data
        dataset = make_dataset(tmp_path / "train.csv", rows=300, features=4)
        with open(dataset, "rb") as handle:
            put = one.put("/v1/data/train.csv", content=handle.read())
        assert put.status_code in (200, 201), put.text
        package = one.post(
            "/v1/code-packages", content=zip_dir(EXAMPLE),
            headers={"Content-Type": "application/zip"},
        )  # fmt: skip
        assert package.status_code == 201, package.text
        listed = two.get("/v1/data").json()  # replica 2 sees replica 1's upload
        assert [f["path"] for f in listed["files"]] == ["data/train.csv"]

        # through replica 2: submit, follow by SSE, wait
        job_id = _submit(two, package.json()["id"], "models/run-1")
        with two.stream(
            "GET", f"/v1/jobs/training/{job_id}/logs", params={"follow": "true", "tail": 0},
            timeout=180,
        ) as stream:  # fmt: skip
            events = list(sse_events(stream))
        logs = [e for e in events if e.event == "log"]
        if events[-1].data != {"status": "succeeded"}:
            job = two.get(f"/v1/jobs/training/{job_id}").json()
            raise AssertionError(
                f"job {job.get('status')}: {job.get('error_message')!r}; last lines "
                f"{[e.data['line'] for e in logs[-30:]]}"
            )
        assert any("epoch 3" in e.data["line"] for e in logs), [e.data for e in logs]
        ids = [int(e.id or 0) for e in logs]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        finished = _job(two, job_id)
        assert finished["status"] == "succeeded", finished
        assert finished["metrics"]["accuracy"] > 0.5

        # register and deploy through replica 2; mlp serve answers from S3 + PostgreSQL
        created = two.post("/v1/models", json={"name": "churn", "framework": "sklearn"})
        assert created.status_code == 201, created.text
        version = two.post("/v1/models/churn/versions", json={"job_id": job_id})
        assert version.status_code == 201, version.text
        deployed = two.post("/v1/deployments", json={"name": "churn", "model": "churn"})
        assert deployed.status_code == 201, deployed.text
        with _serving(envs[2]) as (serving, grpc_port):
            status = _wait(
                "the deployment to load",
                lambda: (
                    (s := two.get("/v1/deployments/churn").json())["status"] in ("ready", "failed")
                    and s
                ),
            )
            assert status["status"] == "ready", status
            with open(dataset) as handle:
                header, first = list(csv.reader(handle))[:2]
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                reply = serving_pb2_grpc.ModelServingStub(channel).Predict(
                    serving_pb2.PredictRequest(
                        model_id="churn",
                        features=[
                            serving_pb2.Feature(name=n, float_value=float(v))
                            for n, v in zip(header[:-1], first[:-1], strict=True)
                        ],
                    ),
                    metadata=(("x-api-key", api_key),),
                    timeout=30,
                )
            assert list(reply.predictions) in ([0.0], [1.0])
            assert serving.poll() is None

        # kill the scheduler replica: the other takes the lease and runs the next job
        scheduler.stop(signal.SIGKILL)
        survivor = other.client(api_key)
        second = _submit(survivor, package.json()["id"], "models/run-2")
        _wait("the survivor to take the lease", lambda: _lease_holder_pid(db) == other.process.pid)
        done = _wait(
            "the second job to end",
            lambda: (j := _job(survivor, second))["status"] in ("succeeded", "failed") and j,
        )
        assert done["status"] == "succeeded", done
        lines = survivor.get(f"/v1/jobs/training/{job_id}/logs", params={"tail": 1000}).json()
        assert any("epoch 3" in line["line"] for line in lines["logs"])  # the dead replica's
        for data_dir in dirs:
            assert _blobs(data_dir) == [], data_dir
    finally:
        stderr = [replica.stop() for replica in replicas]
        db.dispose()
    for text_ in stderr:
        assert "Traceback" not in text_, text_
