"""Deployments end to end: register -> deploy over REST -> predict over gRPC, on both stores.

The control plane (uvicorn) and the serving plane (supervisor + worker processes) run for
real on 127.0.0.1 and talk only through the store, as in `mlp server`.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_platform.serving import ServingServer
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.conftest import Platform, Tenant, serving_plane

pytestmark = pytest.mark.slow

FEATURES = ["tenure", "charges", "calls", "age"]


@dataclass
class Trained:
    model: Any
    payload: bytes


def _train(kind: str) -> Trained:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=FEATURES)
    labels = (frame["tenure"] + frame["charges"] > 0).astype(int)
    model: Any = (
        RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
        if kind == "rf"
        else LogisticRegression()
    )
    model.fit(frame, labels)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return Trained(model=model, payload=buffer.getvalue())


@pytest.fixture(scope="module")
def trained() -> dict[str, Trained]:
    return {"rf": _train("rf"), "lr": _train("lr")}


@dataclass
class Plane:
    server: ServingServer
    channel: grpc.Channel

    @property
    def stub(self) -> serving_pb2_grpc.ModelServingStub:
        return serving_pb2_grpc.ModelServingStub(self.channel)


@pytest.fixture(scope="module")
def plane(platform: Platform) -> Iterator[Plane]:
    with serving_plane(platform, workers=2) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        try:
            yield Plane(server, channel)
        finally:
            channel.close()


def _register(client: httpx.Client, model: str, payload: bytes) -> int:
    if client.get(f"/v1/models/{model}").status_code == 404:
        created = client.post("/v1/models", json={"name": model, "framework": "sklearn"})
        assert created.status_code == 201, created.text
    version = client.post(f"/v1/models/{model}/versions", files={"file": ("model.joblib", payload)})
    assert version.status_code == 201, version.text
    body = version.json()
    assert [f["name"] for f in body["signature"]["input_features"]] == FEATURES
    number: int = body["version"]
    return number


def _wait(
    client: httpx.Client, name: str, *, status: str, serving_version: int | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/deployments/{name}").json()
        if body["status"] == status and (
            serving_version is None or body["serving_version"] == serving_version
        ):
            return body
        time.sleep(0.1)
    raise AssertionError(f"deployment {name} never reached {status}/{serving_version}: {body}")


def _request(name: str, row: np.ndarray, version: str = "") -> serving_pb2.PredictRequest:
    # features by name, deliberately not in the model's order
    features = [
        serving_pb2.Feature(name=FEATURES[i], float_value=float(row[i])) for i in (2, 0, 3, 1)
    ]
    return serving_pb2.PredictRequest(model_id=name, version=version, features=features)


def _metadata(tenant: Tenant) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", tenant.api_key),)


def _rows() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(20, 4)).astype(np.float32)


def test_register_deploy_predict(
    platform: Platform,
    plane: Plane,
    tenant: Tenant,
    client: httpx.Client,
    trained: dict[str, Trained],
) -> None:
    _register(client, "churn", trained["rf"].payload)
    created = client.post("/v1/deployments", json={"name": "churn-live", "model": "churn"})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending" and created.json()["target_version"] == 1
    ready = _wait(client, "churn-live", status="ready", serving_version=1)
    assert ready["alias"] is None and ready["version"] is None

    rows = _rows()
    expected = trained["rf"].model.predict(pd.DataFrame(rows.astype(np.float64), columns=FEATURES))
    probabilities = trained["rf"].model.predict_proba(
        pd.DataFrame(rows.astype(np.float64), columns=FEATURES)
    )
    for row, want, proba in zip(rows, expected, probabilities, strict=True):
        reply = plane.stub.Predict(_request("churn-live", row), metadata=_metadata(tenant))
        assert list(reply.predictions) == [float(want)]
        assert reply.model_version_used == "1"
        assert reply.confidence_scores["1"] == pytest.approx(proba[1], abs=1e-6)

    listed = client.get("/v1/deployments").json()
    assert [d["name"] for d in listed["deployments"]] == ["churn-live"] and listed["total"] == 1


def test_rolling_update_under_load_fails_no_request(
    platform: Platform,
    plane: Plane,
    tenant: Tenant,
    client: httpx.Client,
    trained: dict[str, Trained],
) -> None:
    _register(client, "roll", trained["rf"].payload)
    v2 = _register(client, "roll", trained["lr"].payload)
    assert (
        client.post(
            "/v1/deployments", json={"name": "roll", "model": "roll", "version": 1}
        ).status_code
        == 201
    )
    _wait(client, "roll", status="ready", serving_version=1)

    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()
    row = _rows()[0]

    def hammer() -> None:
        stub = serving_pb2_grpc.ModelServingStub(plane.channel)
        while not stop.is_set():
            try:
                reply = stub.Predict(_request("roll", row), metadata=_metadata(tenant), timeout=10)
                versions.add(reply.model_version_used)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        patched = client.patch("/v1/deployments/roll", json={"version": v2})
        assert patched.status_code == 200, patched.text
        assert patched.json()["target_version"] == v2
        _wait(client, "roll", status="ready", serving_version=v2)
        deadline = time.monotonic() + 20
        while str(v2) not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert versions == {"1", str(v2)}


def test_alias_following_and_registry_guard(
    platform: Platform,
    plane: Plane,
    tenant: Tenant,
    client: httpx.Client,
    trained: dict[str, Trained],
) -> None:
    _register(client, "aliased", trained["rf"].payload)
    _register(client, "aliased", trained["lr"].payload)
    assert client.put("/v1/models/aliased/aliases/production", json={"version": 1}).status_code in (
        200,
        201,
    )
    created = client.post(
        "/v1/deployments", json={"name": "prod", "model": "aliased", "alias": "production"}
    )
    assert created.status_code == 201 and created.json()["target_version"] == 1
    _wait(client, "prod", status="ready", serving_version=1)

    etag = client.get("/v1/models/aliased/aliases/production").headers["etag"]
    moved = client.put(
        "/v1/models/aliased/aliases/production", json={"version": 2}, headers={"If-Match": etag}
    )
    assert moved.status_code == 200, moved.text
    _wait(client, "prod", status="ready", serving_version=2)
    reply = plane.stub.Predict(_request("prod", _rows()[0]), metadata=_metadata(tenant))
    assert reply.model_version_used == "2"
    # issue 9, item 6: the alias the deployment follows is a version name on the data plane
    by_alias = plane.stub.Predict(
        _request("prod", _rows()[0], version="production"), metadata=_metadata(tenant)
    )
    assert by_alias.model_version_used == "2"
    with pytest.raises(grpc.RpcError) as stale:
        plane.stub.Predict(_request("prod", _rows()[0], version="1"), metadata=_metadata(tenant))
    assert stale.value.code() is grpc.StatusCode.NOT_FOUND
    # a second alias on the served version changes nothing but the aliases: it still reaches
    # the workers (the snapshot's revision covers the whole desired state)
    assert client.put("/v1/models/aliased/aliases/canary", json={"version": 2}).status_code in (
        200,
        201,
    )
    deadline = time.monotonic() + 20
    canary = None
    while canary is None:
        try:
            canary = plane.stub.Predict(
                _request("prod", _rows()[0], version="canary"), metadata=_metadata(tenant)
            )
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND, exc.details()
            assert time.monotonic() < deadline, "the new alias never reached the serving plane"
            time.sleep(0.1)
    assert canary.model_version_used == "2"

    guarded = client.delete("/v1/models/aliased")
    assert guarded.status_code == 409 and "prod" in guarded.json()["detail"]
    assert client.delete("/v1/deployments/prod").status_code == 204
    assert client.get("/v1/deployments/prod").status_code == 404
    deadline = time.monotonic() + 20
    code = None
    while time.monotonic() < deadline:
        try:
            plane.stub.Predict(_request("prod", _rows()[0]), metadata=_metadata(tenant))
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.NOT_FOUND:
                break
        time.sleep(0.1)
    assert code is grpc.StatusCode.NOT_FOUND
    assert client.delete("/v1/models/aliased").status_code == 204


def test_bad_requests_and_other_tenants(
    platform: Platform,
    plane: Plane,
    tenant: Tenant,
    client: httpx.Client,
    trained: dict[str, Trained],
) -> None:
    _register(client, "guarded", trained["rf"].payload)
    cases = [
        ({"name": "a", "model": "nope"}, 422, "body.model"),
        ({"name": "a", "model": "guarded", "version": 9}, 422, "body.version"),
        ({"name": "a", "model": "guarded", "alias": "staging"}, 422, "body.alias"),
        ({"name": "a", "model": "guarded", "version": 1, "alias": "x"}, 422, "body"),
        ({"name": "A B", "model": "guarded"}, 422, "body.name"),
        ({"name": "a", "model": "guarded", "max_batch_size": 0}, 422, "body.max_batch_size"),
    ]
    for body, status, path in cases:
        response = client.post("/v1/deployments", json=body)
        assert response.status_code == status, (body, response.text)
        assert any(e["path"].startswith(path) for e in response.json()["errors"]), response.json()
    assert (
        client.post("/v1/deployments", json={"name": "mine", "model": "guarded"}).status_code == 201
    )
    duplicate = client.post("/v1/deployments", json={"name": "mine", "model": "guarded"})
    assert duplicate.status_code == 409
    _wait(client, "mine", status="ready", serving_version=1)

    other = platform.new_tenant("intruder")
    theirs = platform.client(other)
    for method, path, body in [
        ("GET", "/v1/deployments/mine", None),
        ("PATCH", "/v1/deployments/mine", {"version": 1}),
        ("DELETE", "/v1/deployments/mine", None),
    ]:
        assert theirs.request(method, path, json=body).status_code == 404
    assert theirs.get("/v1/deployments").json()["total"] == 0
    assert theirs.post("/v1/deployments", json={"name": "x", "model": "guarded"}).status_code == 422
    with pytest.raises(grpc.RpcError) as caught:
        plane.stub.Predict(_request("mine", _rows()[0]), metadata=_metadata(other))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as anonymous:
        plane.stub.Predict(_request("mine", _rows()[0]))
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # the owner still gets answers
    assert plane.stub.Predict(_request("mine", _rows()[0]), metadata=_metadata(tenant)).predictions
