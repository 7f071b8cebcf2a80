"""Registry fixtures: tiny real models built in the test, and a succeeded job with an output."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ml_platform.core.ids import new_id
from ml_platform.core.jobs import JobStatus
from ml_platform.store.jobs import JobRepository
from tests.conftest import BACKENDS, Platform, Tenant, start_platform


@dataclass(frozen=True)
class BuiltModels:
    joblib_bytes: bytes
    onnx_bytes: bytes
    features: tuple[str, ...]


@pytest.fixture(scope="session")
def models() -> BuiltModels:
    frame = pd.DataFrame(
        {
            "tenure_months": [1.0, 5.0, 30.0, 48.0, 2.0, 60.0],
            "monthly_charges": [90, 80, 20, 30, 99, 25.0],
        }
    )
    labels = ["churn", "churn", "stay", "stay", "churn", "stay"]
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(frame, labels), buffer)
    from skl2onnx import to_onnx

    values = frame.to_numpy(dtype=np.float32)
    onnx_model = to_onnx(LogisticRegression().fit(values, labels), values[:1])
    return BuiltModels(
        joblib_bytes=buffer.getvalue(),
        onnx_bytes=onnx_model.SerializeToString(),
        features=("tenure_months", "monthly_charges"),
    )


def new_model(client: object, framework: str = "sklearn", **fields: object) -> str:
    name = f"m-{secrets.token_hex(4)}"
    response = client.post(  # type: ignore[attr-defined]
        "/v1/models", json={"name": name, "framework": framework, **fields}
    )
    assert response.status_code == 201, response.text
    return name


def succeeded_job(platform: Platform, tenant: Tenant, files: dict[str, bytes]) -> str:
    """A job of ``tenant`` that succeeded, with ``files`` at its output_path (tenant area).

    Inserted and finished in one transaction, so the scheduler never sees it pending.
    """
    job_id = new_id("job")
    output = f"outputs/{job_id}"
    root = platform.settings.data_dir.resolve() / "tenants" / tenant.id / output
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    spec = {
        "name": "churn-train",
        "framework": "sklearn",
        "docker_image": "local",
        "entrypoint": "python train.py",
        "data_path": "data/train.csv",
        "output_path": output,
        "hyperparameters": {"C": 1.0, "max_iter": 100},
        "tags": {},
        "tenant_id": tenant.id,
    }
    with platform.db.transaction() as session:
        repo = JobRepository(session, tenant.id)
        repo.add(
            job_id=job_id,
            name="churn-train",
            framework="sklearn",
            spec=spec,
            env_vars={},
            tags={},
            created_by="test",
        )
        assert repo.transition(job_id, expected=[JobStatus.PENDING], target=JobStatus.RUNNING)
        assert repo.transition(
            job_id,
            expected=[JobStatus.RUNNING],
            target=JobStatus.SUCCEEDED,
            metrics={"accuracy": 0.93, "loss": 0.21},
        )
    return job_id


def job_output_dir(platform: Platform, tenant: Tenant, job_id: str) -> Path:
    return platform.settings.data_dir.resolve() / "tenants" / tenant.id / "outputs" / job_id


@pytest.fixture(scope="module", params=BACKENDS)
def small_upload_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: object,
) -> Iterator[Platform]:
    """A platform whose upload limit is 64 KiB, to test 413 cheaply."""
    backend: str = request.param
    url = database_url_factory(backend)  # type: ignore[operator]
    running, server = start_platform(
        backend,
        tmp_path_factory.mktemp(f"small-{backend}"),
        url,
        max_upload_bytes=64 * 1024,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()
