"""Features at prediction time (issue 14): a deployment with ``feature_refs`` and an
``entity_key`` predicts from the entity key alone, equal to a prediction from the explicit
features, and says which values it used; bad definitions are refused at creation (422 naming
the field) and a key without values is FAILED_PRECONDITION naming key and feature. Real
model, real serving worker, SQLite and PostgreSQL, and the Redis online store."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.conftest import Platform, serving_plane
from tests.features.events import Events, define, generate, materialize, upload
from tests.features.test_redis_online_store import redis_platform  # noqa: F401 (fixture)

INPUTS = ["orders", "spend", "active"]  # the model's inputs, each a feature of the view
REFS = [f"customer_stats:{name}" for name in INPUTS]


def _payload() -> bytes:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "orders": rng.integers(0, 50, 200).astype(float),
            "spend": rng.uniform(0, 500, 200),
            "active": rng.integers(0, 2, 200).astype(float),
        }
    )
    labels = (frame["orders"] * 10 + frame["spend"] > 400).astype(int)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=500).fit(frame, labels), buffer)
    return buffer.getvalue()


def _register(client: httpx.Client, model: str, payload: bytes) -> None:
    created = client.post("/v1/models", json={"name": model, "framework": "sklearn"})
    assert created.status_code == 201, created.text
    version = client.post(f"/v1/models/{model}/versions", files={"file": ("m.joblib", payload)})
    assert version.status_code == 201, version.text


def _ready(client: httpx.Client, name: str) -> None:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/deployments/{name}").json()
        if body["status"] == "ready":
            return
        time.sleep(0.05)
    raise AssertionError(f"deployment {name} never became ready: {body}")


def _explicit(row: dict[str, Any]) -> list[serving_pb2.Feature]:
    return [
        serving_pb2.Feature(name="orders", int_value=row["orders"]),
        serving_pb2.Feature(name="spend", float_value=row["spend"]),
        serving_pb2.Feature(name="active", bool_value=row["active"]),
    ]


def _refused(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/deployments", json=body)
    assert response.status_code == 422, response.text
    return response.text


def _predict_from_entity_key(platform: Platform, stub: serving_pb2_grpc.ModelServingStub) -> None:
    owner, other = platform.new_tenant(), platform.new_tenant()
    client, intruder = platform.client(owner), platform.client(other)
    events: Events = generate(n_customers=15, n_rows=150)
    upload(client, "predict.csv", events.csv())
    define(client, "predict.csv")
    assert materialize(client)["status"] == "succeeded"
    payload = _payload()
    model = f"m-{secrets.token_hex(3)}"
    _register(client, model, payload)
    _register(intruder, model, payload)

    base = {"name": f"d-{secrets.token_hex(3)}", "model": model, "entity_key": "customer_id"}
    assert "body.feature_refs[1]" in _refused(
        client, {**base, "feature_refs": [REFS[0], "customer_stats:nope"]}
    )
    assert "body.feature_refs[0]" in _refused(client, {**base, "feature_refs": ["absent:orders"]})
    assert "customer_stats" in _refused(intruder, {**base, "feature_refs": REFS})  # not theirs
    assert "segment" in _refused(client, {**base, "feature_refs": ["customer_stats:segment"]})
    assert "body.entity_key" in _refused(client, {**base, "feature_refs": REFS, "entity_key": "x"})
    alone = {"name": base["name"], "model": model, "feature_refs": REFS}
    assert "entity_key" in _refused(client, alone)

    created = client.post("/v1/deployments", json={**base, "feature_refs": REFS})
    assert created.status_code == 201, created.text
    assert created.json()["feature_refs"] == REFS
    assert created.json()["entity_key"] == "customer_id"
    name = base["name"]
    assert client.get(f"/v1/deployments/{name}").json()["feature_refs"] == REFS
    assert client.get(f"/v2/deployments/{name}").json()["entity_key"] == "customer_id"
    _ready(client, name)

    key = (("x-api-key", owner.api_key),)
    latest = events.latest()
    for customer in sorted(latest)[:5]:
        entity = serving_pb2.Feature(name="customer_id", int_value=customer)
        by_key = stub.Predict(
            serving_pb2.PredictRequest(model_id=name, features=[entity]),
            metadata=key,
            timeout=30,
        )
        explicit = stub.Predict(
            serving_pb2.PredictRequest(model_id=name, features=_explicit(latest[customer])),
            metadata=key,
            timeout=30,
        )
        assert list(by_key.predictions) == list(explicit.predictions)
        assert dict(by_key.confidence_scores) == dict(explicit.confidence_scores)
        assert [f.name for f in by_key.features_used] == REFS
        assert not explicit.features_used
        used = by_key.features_used
        assert used[0].int_value == latest[customer]["orders"]
        assert used[1].float_value == np.float32(latest[customer]["spend"])
        assert used[2].bool_value is latest[customer]["active"]

    with pytest.raises(grpc.RpcError) as missing:
        stub.Predict(
            serving_pb2.PredictRequest(
                model_id=name, features=[serving_pb2.Feature(name="customer_id", int_value=99_999)]
            ),
            metadata=key,
            timeout=30,
        )
    assert missing.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "customer_id=99999" in missing.value.details()
    assert "customer_stats:orders" in missing.value.details()
    with pytest.raises(grpc.RpcError) as wrong_type:
        stub.Predict(
            serving_pb2.PredictRequest(
                model_id=name,
                features=[serving_pb2.Feature(name="customer_id", float_value=1.5)],
            ),
            metadata=key,
            timeout=30,
        )
    assert wrong_type.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "customer_id" in wrong_type.value.details()


@pytest.fixture(scope="module")
def stub(platform: Platform) -> Iterator[serving_pb2_grpc.ModelServingStub]:
    with serving_plane(platform) as server, grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        yield serving_pb2_grpc.ModelServingStub(channel)


def test_predict_from_entity_key_equals_explicit_features(
    platform: Platform, stub: serving_pb2_grpc.ModelServingStub
) -> None:
    _predict_from_entity_key(platform, stub)


def test_predict_from_entity_key_with_the_redis_online_store(
    redis_platform: Platform,  # noqa: F811 (the imported fixture)
) -> None:
    assert redis_platform.context.features is not None
    assert redis_platform.context.features.store.name == "redis"
    with (
        serving_plane(redis_platform) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        grpc.channel_ready_future(channel).result(timeout=60)
        _predict_from_entity_key(redis_platform, serving_pb2_grpc.ModelServingStub(channel))
