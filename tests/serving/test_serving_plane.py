"""Issue 9, item 10 on a real serving plane: gRPC health waits for the models like V2
readiness, and the batcher never predicts rows whose caller's deadline passed.

The slow model and the slow load are gated on files the test creates, so nothing here
depends on how fast the machine is.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ml_platform.serving import (
    ArtifactFormat,
    ServingServer,
)
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.serving.conftest import KEY_T1, authenticator, settings
from tests.serving.doubles import InMemoryDeploymentSource, InMemoryStatusSink
from tests.serving.models_fixture import FEATURES, GatedLoad, GatedPredict, served

AUTH = (("x-api-key", KEY_T1),)


@dataclass
class Plane:
    server: ServingServer
    sink: InMemoryStatusSink
    channel: grpc.Channel
    load_gate: Path
    predict_started: Path
    predict_gate: Path

    @property
    def stub(self) -> serving_pb2_grpc.ModelServingStub:
        return serving_pb2_grpc.ModelServingStub(self.channel)

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        status: int = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=30, wait_for_ready=True
        ).status
        return status


def _wait_until(path: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("gated")
    load_gate, started, predict_gate = root / "load.go", root / "predict.started", root / "go"
    slow_load = root / "slow-load.pkl"
    slow_load.write_bytes(pickle.dumps(GatedLoad(str(load_gate))))
    slow_predict = root / "slow-predict.pkl"
    slow_predict.write_bytes(pickle.dumps(GatedPredict(str(started), str(predict_gate))))
    deployments = [
        served("t1", "slow-predict", slow_predict, ArtifactFormat.PICKLE, max_batch_size=64),
        served("t1", "slow-load", slow_load, ArtifactFormat.PICKLE),
    ]
    sink = InMemoryStatusSink()
    with ServingServer(
        settings(serving_workers=1), InMemoryDeploymentSource(deployments), sink, authenticator()
    ) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            yield Plane(server, sink, channel, load_gate, started, predict_gate)
        finally:
            load_gate.touch()
            predict_gate.touch()
            channel.close()


def _request(first: float) -> serving_pb2.PredictRequest:
    values = [first, *([0.0] * (len(FEATURES) - 1))]
    return serving_pb2.PredictRequest(
        model_id="slow-predict",
        features=[
            serving_pb2.Feature(name=n, float_value=v)
            for n, v in zip(FEATURES, values, strict=True)
        ],
    )


def test_grpc_health_is_not_serving_until_the_models_loaded(plane: Plane) -> None:
    """gRPC health said SERVING before any model had loaded, while V2 readiness waited."""
    assert plane.health() == health_pb2.HealthCheckResponse.NOT_SERVING
    assert plane.health("ml_platform.serving.ModelServing") == (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )
    assert httpx.get(f"{plane.server.rest_url}/v2/health/ready").status_code == 503
    seed = plane.stub.HealthCheck(serving_pb2.HealthCheckRequest(), metadata=AUTH)
    assert not seed.healthy and seed.status == "NOT_SERVING"
    plane.load_gate.touch()
    for name in ("slow-load", "slow-predict"):
        assert plane.sink.wait_for("t1", name, timeout=60).state.value == "ready"
    deadline = time.monotonic() + 30
    while plane.health() != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, "gRPC health never became SERVING"
        time.sleep(0.05)
    assert plane.health("inference.GRPCInferenceService") == health_pb2.HealthCheckResponse.SERVING
    assert httpx.get(f"{plane.server.rest_url}/v2/health/ready").status_code == 200
    seed = plane.stub.HealthCheck(serving_pb2.HealthCheckRequest(), metadata=AUTH)
    assert seed.healthy and seed.status == "SERVING"


def _rows_predicted(plane: Plane) -> int:
    health = plane.stub.HealthCheck(
        serving_pb2.HealthCheckRequest(model_id="slow-predict"), metadata=AUTH
    )
    return int(health.details["rows_predicted"])


def test_rows_whose_deadline_passed_are_not_predicted(plane: Plane) -> None:
    """The batcher still predicted rows whose callers had already got DEADLINE_EXCEEDED."""
    plane.load_gate.touch()
    assert plane.sink.wait_for("t1", "slow-predict", timeout=60).state.value == "ready"
    # the model is busy with a row of its own (blocked on the gate) ...
    busy = plane.stub.Predict.future(_request(777.0), metadata=AUTH, timeout=60)
    _wait_until(plane.predict_started)
    before = _rows_predicted(plane)
    # ... so this caller queues behind it, and gives up
    with pytest.raises(grpc.RpcError) as info:
        plane.stub.Predict(_request(1.0), metadata=AUTH, timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    plane.predict_gate.touch()
    assert busy.result().predictions == [1.0]
    # a caller that still waits is answered; the expired row never reached the model
    after = plane.stub.Predict(_request(2.0), metadata=AUTH, timeout=30)
    assert np.allclose([after.confidence_scores["1"]], [0.75])
    assert _rows_predicted(plane) == before + 1
