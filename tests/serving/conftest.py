"""Serving fixtures: real models on disk and a real multi-process serving plane on 127.0.0.1."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ml_platform.config import Settings
from ml_platform.serving import (
    ArtifactFormat,
    Principal,
    ServedModel,
    ServingServer,
)
from ml_platform.serving.proto import serving_pb2_grpc
from tests.serving.doubles import (
    InMemoryDeploymentSource,
    InMemoryStatusSink,
    StaticKeyAuthenticator,
)
from tests.serving.models_fixture import Built, RaiseOnPredict, build_models, served

KEY_T1 = "mlp_test_key_tenant_one"
KEY_T2 = "mlp_test_key_tenant_two"
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass
class Serving:
    server: ServingServer
    source: InMemoryDeploymentSource
    sink: InMemoryStatusSink
    models: dict[str, Built]
    deployments: list[ServedModel]
    channel: grpc.Channel

    @property
    def stub(self) -> serving_pb2_grpc.ModelServingStub:
        return serving_pb2_grpc.ModelServingStub(self.channel)


def authenticator() -> StaticKeyAuthenticator:
    return StaticKeyAuthenticator(
        {KEY_T1: Principal("t1", "alice"), KEY_T2: Principal("t2", "bob")}
    )


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "grpc_port": 0,
        "serving_rest_port": 0,
        "serving_workers": 2,
        "grpc_max_message_bytes": MAX_MESSAGE_BYTES,
        "serving_source_poll_seconds": 0.1,
        "serving_model_load_timeout_seconds": 30.0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def raising_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "raises.pkl"
    path.write_bytes(pickle.dumps(RaiseOnPredict()))
    return path


def main_deployments(built: dict[str, Built], raising_path: Path) -> list[ServedModel]:
    rf, lr, xg = built["rf"].paths, built["logreg"].paths, built["xgb"].paths
    return [
        served(
            "t1",
            "rf-skops",
            rf[ArtifactFormat.SKOPS],
            ArtifactFormat.SKOPS,
            model="rf",
            aliases=("prod",),
        ),
        served("t1", "rf-joblib", rf[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
        served("t1", "rf-onnx", rf[ArtifactFormat.ONNX], ArtifactFormat.ONNX),
        served("t1", "logreg-onnx", lr[ArtifactFormat.ONNX], ArtifactFormat.ONNX),
        served("t1", "xgb-json", xg[ArtifactFormat.XGBOOST_JSON], ArtifactFormat.XGBOOST_JSON),
        served("t1", "xgb-ubj", xg[ArtifactFormat.XGBOOST_UBJ], ArtifactFormat.XGBOOST_UBJ),
        served("t1", "raises", raising_path, ArtifactFormat.PICKLE),
        served("t2", "t2-joblib", lr[ArtifactFormat.JOBLIB], ArtifactFormat.JOBLIB),
    ]


@pytest.fixture(scope="module")
def serving(built: dict[str, Built], raising_path: Path) -> Iterator[Serving]:
    deployments = main_deployments(built, raising_path)
    source = InMemoryDeploymentSource(deployments)
    sink = InMemoryStatusSink()
    # The pickle models here are served from their sandboxes (the transport, isolation and
    # failure tests need them there); test_sandbox_export covers the default, where a
    # skops-expressible pickle is served from its export in the workers.
    with ServingServer(
        settings(serving_sandbox_export=False), source, sink, authenticator()
    ) as server:
        for d in deployments:
            status = sink.wait_for(d.tenant_id, d.deployment, timeout=120)
            assert status.state.value == "ready", status
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            yield Serving(server, source, sink, built, deployments, channel)
        finally:
            channel.close()
