"""``mlp serve`` as a separate process sharing the control plane's store (multi-process install)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import grpc
import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.conftest import Platform, Tenant
from tests.ports import free_port

FEATURES = ["a", "b", "c"]


def test_mlp_serve_serves_what_the_control_plane_deployed(
    platform: Platform, tenant: Tenant
) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    payload = io.BytesIO()
    joblib.dump(model, payload)

    client = platform.client(tenant)
    assert (
        client.post("/v1/models", json={"name": "solo", "framework": "sklearn"}).status_code == 201
    )
    upload = client.post(
        "/v1/models/solo/versions", files={"file": ("m.joblib", payload.getvalue())}
    )
    assert upload.status_code == 201, upload.text
    assert client.post("/v1/deployments", json={"name": "solo", "model": "solo"}).status_code == 201

    grpc_port = free_port()
    env = {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(platform.settings.data_dir),
        "ML_PLATFORM_DATABASE_URL": platform.settings.resolved_database_url,
        "ML_PLATFORM_SERVING_SOURCE_POLL_SECONDS": "0.2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_platform.cli.main",
            "serve",
            "--grpc-port",
            str(grpc_port),
            "--serving-rest-port",
            str(free_port()),
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = {}
        while time.monotonic() < deadline:
            status = client.get("/v1/deployments/solo").json()
            if status["status"] in ("ready", "failed") or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert status["status"] == "ready", status
        row = rng.normal(size=3)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = serving_pb2_grpc.ModelServingStub(channel)
            request = serving_pb2.PredictRequest(
                model_id="solo",
                features=[
                    serving_pb2.Feature(name=n, float_value=float(v))
                    for n, v in zip(FEATURES, row, strict=True)
                ],
            )
            reply = stub.Predict(request, metadata=(("x-api-key", tenant.api_key),), timeout=10)
        expected = model.predict(pd.DataFrame([row], columns=FEATURES))[0]
        assert list(reply.predictions) == [float(expected)]
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        assert "Traceback" not in (stderr or ""), stderr
