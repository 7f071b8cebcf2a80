"""Features at prediction time (issue 14): a deployment with ``feature_refs`` and an
``entity_key`` predicts from the entity key alone, equal to a prediction from the explicit
features, and says which values it used; bad definitions are refused at creation (422 naming
the field) and a key without values is FAILED_PRECONDITION naming key and feature. Real
model, real serving worker, SQLite and PostgreSQL, and the Redis online store."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ml_platform.config import Settings
from ml_platform.core.errors import PreconditionFailed
from ml_platform.server.serving_bridge import StoreDeploymentSource, bridge_seams
from ml_platform.serving import (
    ArtifactFormat,
    FeatureSpec,
    ModelSignature,
    ServedModel,
    ServingServer,
)
from ml_platform.serving.models import Principal
from ml_platform.serving.plane.feature_inputs import look_up_inputs
from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc
from tests.conftest import Platform, serving_plane
from tests.features.events import Events, define, generate, materialize, upload
from tests.features.test_redis_online_store import redis_platform  # noqa: F401 (fixture)
from tests.serving.doubles import (
    InMemoryDeploymentSource,
    InMemoryStatusSink,
    StaticKeyAuthenticator,
)

pytestmark = pytest.mark.slow

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
    info = stub.GetModel(serving_pb2.GetModelRequest(model_id=name), metadata=key, timeout=30)
    assert info.metadata["feature_refs"] == ",".join(REFS)
    assert info.metadata["entity_key"] == "customer_id"
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

    stream = stub.PredictStream(
        iter(
            [
                serving_pb2.PredictRequest(
                    model_id=name, features=[serving_pb2.Feature(name="customer_id", int_value=c)]
                )
                for c in sorted(latest)[:3]
            ]
        ),
        metadata=key,
        timeout=30,
    )
    for customer, answer in zip(sorted(latest)[:3], stream, strict=True):
        assert [f.int_value for f in answer.features_used[:1]] == [latest[customer]["orders"]]

    with pytest.raises(grpc.RpcError) as foreign:  # another tenant's deployment, by name
        stub.Predict(
            serving_pb2.PredictRequest(
                model_id=name, features=[serving_pb2.Feature(name="customer_id", int_value=1)]
            ),
            metadata=(("x-api-key", other.api_key),),
            timeout=30,
        )
    assert foreign.value.code() is grpc.StatusCode.NOT_FOUND

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


def _deploy(platform: Platform, events: Events, ttl_seconds: int = 0) -> tuple[str, str]:
    """A tenant with the events materialized and a deployment with the refs: (tenant, name)."""
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    upload(client, "inputs.csv", events.csv())
    define(client, "inputs.csv", ttl_seconds=ttl_seconds)
    assert materialize(client)["status"] == "succeeded"
    model = f"m-{secrets.token_hex(3)}"
    _register(client, model, _payload())
    name = f"d-{secrets.token_hex(3)}"
    created = client.post(
        "/v1/deployments",
        json={"name": name, "model": model, "feature_refs": REFS, "entity_key": "customer_id"},
    )
    assert created.status_code == 201, created.text
    plain = client.post("/v1/deployments", json={"name": f"{name}-plain", "model": model})
    assert plain.status_code == 201, plain.text
    return tenant.id, name


def _desired(source: StoreDeploymentSource, tenant_id: str, name: str) -> ServedModel:
    """The deployment as the serving plane receives it (the desired state, no other read)."""
    found = [
        m for m in source.snapshot().models if (m.tenant_id, m.deployment) == (tenant_id, name)
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_refs_travel_with_the_desired_state(platform: Platform) -> None:
    """The bridge hands the serving plane each deployment's refs and key in its
    ``ServedModel`` (JSON round trip included; files written before them still load), and a
    change of them changes the snapshot's revision, so the plane re-rolls."""
    tenant_id, name = _deploy(platform, generate(n_customers=5, n_rows=40))
    source, _, _ = bridge_seams(platform.context)
    served = _desired(source, tenant_id, name)
    assert served.feature_refs == tuple(REFS)
    assert served.entity_key == "customer_id"
    plain = _desired(source, tenant_id, f"{name}-plain")
    assert plain.feature_refs == () and plain.entity_key == ""
    assert ServedModel.from_dict(served.to_dict()) == served
    old = {k: v for k, v in served.to_dict().items() if k not in ("feature_refs", "entity_key")}
    assert ServedModel.from_dict(old) == replace(served, feature_refs=(), entity_key="")

    assert platform.context.deployments is not None
    desired = platform.context.deployments.desired()

    class Fewer:  # the same deployments, the one with refs now taking one ref less
        def desired(self) -> list[Any]:
            return [
                replace(d, feature_refs=d.feature_refs[:2]) if d.feature_refs else d
                for d in desired
            ]

        def record_status(self, *args: Any) -> None:
            """Other tests' unservable deployments (same session store): reported already."""

    assert platform.context.registry is not None
    store, cache = platform.context.registry.store, platform.settings.data_dir / "serving-cache"
    same = StoreDeploymentSource(platform.context.deployments, store, cache)
    fewer = StoreDeploymentSource(Fewer(), store, cache)  # type: ignore[arg-type]
    assert same.snapshot().revision == source.snapshot().revision
    assert fewer.snapshot().revision != source.snapshot().revision
    assert _desired(fewer, tenant_id, name).feature_refs == tuple(REFS[:2])


def test_values_past_ttl_are_refused_naming_key_and_feature(platform: Platform) -> None:
    """The data plane's lookup (real store and database, the model as the plane receives it):
    a view whose values are older than its TTL gives FAILED_PRECONDITION, never a made-up
    input."""
    events = generate(n_customers=5, n_rows=40)  # November 2026: older than an hour
    tenant_id, name = _deploy(platform, events, ttl_seconds=3600)
    served = _desired(bridge_seams(platform.context)[0], tenant_id, name)
    assert platform.context.features is not None
    customer = sorted(events.latest())[0]
    with pytest.raises(PreconditionFailed) as stale:
        asyncio.run(look_up_inputs(platform.context.features.online, tenant_id, served, customer))
    assert f"customer_id={customer}" in stale.value.message
    assert "customer_stats:orders" in stale.value.message
    assert "TTL" in stale.value.message


def test_predict_from_entity_key_with_the_redis_online_store(
    redis_platform: Platform,  # noqa: F811 (the imported fixture)
) -> None:
    """The whole path again with the serving worker reading real Redis."""
    assert redis_platform.context.features is not None
    assert redis_platform.context.features.store.name == "redis"
    with (
        serving_plane(redis_platform) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        grpc.channel_ready_future(channel).result(timeout=60)
        _predict_from_entity_key(redis_platform, serving_pb2_grpc.ModelServingStub(channel))


def test_feature_inputs_from_the_redis_online_store(
    redis_platform: Platform,  # noqa: F811 (the imported fixture)
) -> None:
    """With Redis the transport is the same; what differs is the store the data plane's
    lookup reads (real Redis, one MGET): the inputs equal the latest values, in ref order,
    for the caller's tenant only."""
    platform = redis_platform
    assert platform.context.features is not None
    assert platform.context.features.store.name == "redis"
    online = platform.context.features.online
    events = generate(n_customers=10, n_rows=80)
    tenant_id, name = _deploy(platform, events)
    other_id, _ = _deploy(platform, generate(n_customers=10, n_rows=80, seed=8))
    served = _desired(bridge_seams(platform.context)[0], tenant_id, name)
    for customer, row in sorted(events.latest().items())[:5]:
        used = asyncio.run(look_up_inputs(online, tenant_id, served, customer))
        assert [(u.name, u.ref) for u in used] == list(zip(INPUTS, REFS, strict=True))
        assert [u.value for u in used] == [row[n] for n in INPUTS]
        assert {u.event_ts for u in used} == {row["event_timestamp"]}
        theirs = asyncio.run(look_up_inputs(online, other_id, served, customer))
        assert [u.value for u in theirs] != [u.value for u in used]  # their own values
    with pytest.raises(PreconditionFailed) as missing:
        asyncio.run(look_up_inputs(online, tenant_id, served, 99_999))
    assert "customer_id=99999" in missing.value.message


def test_a_serving_plane_without_a_feature_store_never_answers_internal(
    tmp_path: Path,
) -> None:
    """The serving tests' kind of plane: deployments from a source other than the platform's
    store, and a database without feature tables. A deployment with refs still predicts from
    explicit features; its entity key alone is UNAVAILABLE naming the deployment (the store
    cannot be read), never INTERNAL. With no lookup at all it is FAILED_PRECONDITION."""
    artifact = tmp_path / "m.joblib"
    artifact.write_bytes(_payload())
    served = ServedModel(
        tenant_id="t1",
        deployment="with-refs",
        model="m",
        version=1,
        artifact_format=ArtifactFormat.JOBLIB,
        artifact_path=str(artifact),
        signature=ModelSignature(tuple(FeatureSpec(n) for n in INPUTS), ("0", "1")),
        framework="sklearn",
        revision="r1",
        feature_refs=tuple(REFS),
        entity_key="customer_id",
    )
    with pytest.raises(PreconditionFailed) as no_lookup:
        asyncio.run(look_up_inputs(None, "t1", served, 1))
    assert "without a feature store" in no_lookup.value.message
    assert "with-refs" in no_lookup.value.message

    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        grpc_port=0,
        serving_rest_port=0,
        serving_workers=1,
        serving_source_poll_seconds=0.1,
    )
    source, sink = InMemoryDeploymentSource([served]), InMemoryStatusSink()
    keys = StaticKeyAuthenticator({"key-t1": Principal("t1", "alice")})
    with (
        ServingServer(settings, source, sink, keys) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        assert sink.wait_for("t1", "with-refs", timeout=120).state.value == "ready"
        stub = serving_pb2_grpc.ModelServingStub(channel)
        metadata = (("x-api-key", "key-t1"),)
        row = {"orders": 3, "spend": 120.5, "active": True}
        explicit = stub.Predict(
            serving_pb2.PredictRequest(model_id="with-refs", features=_explicit(row)),
            metadata=metadata,
            timeout=30,
        )
        assert len(explicit.predictions) == 1 and not explicit.features_used
        with pytest.raises(grpc.RpcError) as by_key:
            stub.Predict(
                serving_pb2.PredictRequest(
                    model_id="with-refs",
                    features=[serving_pb2.Feature(name="customer_id", int_value=1)],
                ),
                metadata=metadata,
                timeout=30,
            )
        assert by_key.value.code() is grpc.StatusCode.UNAVAILABLE, by_key.value.details()
        assert "with-refs" in by_key.value.details()
