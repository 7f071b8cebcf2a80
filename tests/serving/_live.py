"""A live control plane + serving plane with real deployments, for the data-plane edge tests.

Reuses tests/deployments' ``plane`` fixture (supervisor + worker processes on loopback, fed by
the store) and its helpers to register and deploy a small sklearn model, on both stores.
``World`` holds what a hostile or error test needs: a ready deployment, one whose artifact
failed to load, an owner, another tenant, and both gRPC services on one channel.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

import ml_platform
from ml_platform.core.ids import new_id
from ml_platform.serving.proto import inference_pb2, serving_pb2, serving_pb2_grpc
from ml_platform.store.models import ModelRepository, NewVersion
from tests.conftest import Platform, Tenant
from tests.deployments.test_deployments import FEATURES, Plane, Trained, _register, _wait

V2_SERVICE = "/inference.GRPCInferenceService/"

# request type, response type, streaming?
V2_METHODS: dict[str, tuple[Any, Any, bool]] = {
    "ServerLive": (inference_pb2.ServerLiveRequest, inference_pb2.ServerLiveResponse, False),
    "ServerReady": (inference_pb2.ServerReadyRequest, inference_pb2.ServerReadyResponse, False),
    "ModelReady": (inference_pb2.ModelReadyRequest, inference_pb2.ModelReadyResponse, False),
    "ServerMetadata": (
        inference_pb2.ServerMetadataRequest,
        inference_pb2.ServerMetadataResponse,
        False,
    ),
    "ModelMetadata": (
        inference_pb2.ModelMetadataRequest,
        inference_pb2.ModelMetadataResponse,
        False,
    ),
    "ModelInfer": (inference_pb2.ModelInferRequest, inference_pb2.ModelInferResponse, False),
    "ModelConfig": (inference_pb2.ModelConfigRequest, inference_pb2.ModelConfigResponse, False),
    "ModelStreamInfer": (
        inference_pb2.ModelInferRequest,
        inference_pb2.ModelStreamInferResponse,
        True,
    ),
}

_TRACEBACK = re.compile(r"Traceback|File \"|line \d+, in ")


@dataclass
class World:
    platform: Platform
    plane: Plane
    owner: Tenant
    other: Tenant
    deployment: str  # ready, serves FEATURES
    broken: str  # its artifact is not a model: the plane's load failed

    @property
    def seed(self) -> serving_pb2_grpc.ModelServingStub:
        return self.plane.stub

    def v2(self, method: str) -> Callable[..., Any]:
        request, response, streaming = V2_METHODS[method]
        factory = self.plane.channel.stream_stream if streaming else self.plane.channel.unary_unary
        return factory(
            V2_SERVICE + method,
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )

    def key(self, tenant: Tenant | None = None) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", (tenant or self.owner).api_key),)

    @property
    def rest_url(self) -> str:
        return self.plane.server.rest_url

    def still_usable(self) -> None:
        """The channel the hostile call used still answers (nothing dropped or wedged)."""
        live = self.v2("ServerLive")(inference_pb2.ServerLiveRequest(), timeout=10)
        assert live.live
        health = self.seed.HealthCheck(
            serving_pb2.HealthCheckRequest(), metadata=self.key(), timeout=10
        )
        assert health.healthy

    def server_paths(self) -> list[str]:
        """Absolute paths of this server that must never reach a client."""
        return [
            str(self.platform.settings.data_dir),
            str(Path(ml_platform.__file__).resolve().parent),
            sys.prefix,
            tempfile.gettempdir() + "/",
            "/work/",
        ]

    def assert_safe_message(self, message: str) -> None:
        assert not _TRACEBACK.search(message), message
        for path in self.server_paths():
            assert path not in message, (path, message[:500])


def make_world(platform: Platform, plane: Plane, trained: dict[str, Trained]) -> World:
    owner, other = platform.new_tenant("hostile"), platform.new_tenant("intruder")
    client = platform.client(owner)
    model = f"m-{secrets.token_hex(3)}"
    _register(client, model, trained["rf"].payload)
    deployment = f"d-{secrets.token_hex(3)}"
    created = client.post("/v1/deployments", json={"name": deployment, "model": model})
    assert created.status_code == 201, created.text
    broken = deploy_artifact(platform, owner, b"not a model")
    _wait(client, deployment, status="ready", serving_version=1)
    _wait(client, broken, status="failed")
    world = World(platform, plane, owner, other, deployment, broken)
    settle(world)
    return world


def settle(world: World) -> None:
    """Wait until the worker behind the world's channel has loaded both deployments too (each
    worker loads on its own; the deployment's status is the first worker's report)."""
    deadline = time.monotonic() + 60
    codes: tuple[object, object] = (None, None)
    while time.monotonic() < deadline:
        codes = (_code(world, world.deployment), _code(world, world.broken))
        if codes == (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION):
            return
        time.sleep(0.1)
    raise AssertionError(f"the plane did not settle: {codes}")


def _code(world: World, deployment: str) -> grpc.StatusCode:
    request = serving_pb2.PredictRequest(model_id=deployment, features=good_features())
    try:
        world.seed.Predict(request, metadata=world.key(), timeout=30)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def deploy_artifact(platform: Platform, tenant: Tenant, payload: bytes | None) -> str:
    """Deploy a new model whose one version is ``payload`` (None: no file at all) with a
    signature over FEATURES, written straight to the store so the registry's own checks (it
    would refuse a non-model) are not what stops it: the serving plane loads it. Returns the
    deployment's name (not waited for)."""
    client = platform.client(tenant)
    model = f"b-{secrets.token_hex(3)}"
    made = client.post("/v1/models", json={"name": model, "framework": "sklearn"})
    assert made.status_code == 201, made.text
    registry = platform.context.registry
    assert registry is not None
    with platform.db.transaction() as session:
        repo = ModelRepository(session, tenant.id)
        record = repo.get(model)
        assert record is not None
        number = repo.allocate_version(record.id)
        assert number is not None
        key = f"tenants/{tenant.id}/models/{record.id}/art_{number}/model.joblib"
        local = registry.store.local_path(key)
        assert local is not None, "these tests run on a local artifact store"
        if payload is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(payload)
        repo.add_version(
            record.id,
            number,
            NewVersion(
                id=new_id("mver"),
                artifact_uri=local.as_uri(),
                artifact_key=key,
                filename="model.joblib",
                sha256=hashlib.sha256(payload or b"").hexdigest(),
                size_bytes=len(payload or b""),
                framework="sklearn",
                format="joblib",
                signature={
                    "input_features": [{"name": n, "dtype": "float64"} for n in FEATURES],
                    "output_labels": [],
                },
                signature_source="test",
                source_kind="upload",
                created_by="test",
            ),
        )
    name = f"x-{secrets.token_hex(3)}"
    created = client.post("/v1/deployments", json={"name": name, "model": model})
    assert created.status_code == 201, created.text
    return name


def good_features(values: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)) -> list[serving_pb2.Feature]:
    return [
        serving_pb2.Feature(name=n, float_value=v) for n, v in zip(FEATURES, values, strict=True)
    ]


@pytest.fixture(scope="module", name="world")
def world_fixture(platform: Platform, plane: Plane, trained: dict[str, Trained]) -> World:
    """Import it as ``world_fixture`` with ``plane`` and ``trained``; tests ask for ``world``."""
    return make_world(platform, plane, trained)


def rest_v2(world: World, tenant: Tenant | None = None) -> httpx.Client:
    headers = {} if tenant is None else {"x-api-key": tenant.api_key}
    client = httpx.Client(base_url=world.rest_url, headers=headers, timeout=30)
    world.platform._clients.append(client)
    return client
