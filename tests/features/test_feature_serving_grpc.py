"""FeatureServing over gRPC on the serving plane's port (real worker process, real store),
equal to the REST answer; tenancy and bad input as gRPC statuses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from ml_platform.serving.proto import features_pb2, features_pb2_grpc
from tests.conftest import Platform, Tenant, serving_plane
from tests.features.events import FEATURES, define, generate, materialize, upload

REFS = [f"customer_stats:{name}" for name, _ in FEATURES]
STATUS = {
    features_pb2.PRESENT: "PRESENT",
    features_pb2.MISSING: "MISSING",
    features_pb2.OUTSIDE_TTL: "OUTSIDE_TTL",
}


@pytest.fixture(scope="module")
def stub(platform: Platform) -> Iterator[features_pb2_grpc.FeatureServingStub]:
    with serving_plane(platform) as server, grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)  # the worker is listening
        yield features_pb2_grpc.FeatureServingStub(channel)


def _request(ids: list[int], refs: list[str] = REFS) -> features_pb2.GetOnlineFeaturesRequest:
    return features_pb2.GetOnlineFeaturesRequest(
        features=refs,
        entity_rows=[
            features_pb2.EntityRow(join_keys={"customer_id": features_pb2.Value(int64_value=i)})
            for i in ids
        ],
    )


def _plain(value: features_pb2.FeatureValue) -> dict[str, object]:
    kind = value.value.WhichOneof("kind")
    return {
        "value": getattr(value.value, kind) if kind else None,
        "status": STATUS[value.status],
        "event_timestamp": value.event_timestamp.ToDatetime(tzinfo=UTC)
        if value.HasField("event_timestamp")
        else None,
    }


def _key(tenant: Tenant) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", tenant.api_key),)


def test_grpc_lookup_equals_rest_and_the_latest_values(
    platform: Platform, stub: features_pb2_grpc.FeatureServingStub
) -> None:
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    events = generate(n_customers=30, n_rows=300)
    upload(client, "grpc.csv", events.csv())
    define(client, "grpc.csv")
    assert materialize(client)["status"] == "succeeded"
    latest = events.latest()
    ids = [*sorted(latest)[:20], 99_999]
    answer = stub.GetOnlineFeatures(_request(ids), metadata=_key(tenant), timeout=30)
    assert list(answer.features) == REFS
    rest = client.post(
        "/v1/features/online",
        json={"features": REFS, "entity_rows": [{"customer_id": i} for i in ids]},
    ).json()["results"]
    for customer, vector, via_rest in zip(ids, answer.results, rest, strict=True):
        got = [_plain(v) for v in vector.values]
        assert [g["value"] for g in got] == [v["value"] for v in via_rest["values"]]
        assert [g["status"] for g in got] == [v["status"] for v in via_rest["values"]]
        if customer in latest:
            assert [g["value"] for g in got] == [latest[customer][n] for n, _ in FEATURES]
            assert {g["event_timestamp"] for g in got} == {latest[customer]["event_timestamp"]}
        else:
            assert {g["status"] for g in got} == {"MISSING"}

    # a push is visible to the next gRPC lookup (definitions are cached, values are not)
    now = datetime.now(UTC)
    pushed = client.post(
        "/v1/features/views/customer_stats/push",
        json={"rows": [{"customer_id": ids[0], "event_timestamp": now.isoformat(), "orders": 77}]},
    )
    assert pushed.status_code == 200, pushed.text
    again = stub.GetOnlineFeatures(
        _request([ids[0]], ["customer_stats:orders"]), metadata=_key(tenant), timeout=30
    )
    assert _plain(again.results[0].values[0])["value"] == 77


def test_grpc_reports_outside_ttl(
    platform: Platform, stub: features_pb2_grpc.FeatureServingStub
) -> None:
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    upload(
        client,
        "ttl.csv",
        f"customer_id,event_timestamp,orders,spend,segment,active\n1,{old},5,1.5,gold,True\n".encode(),
    )
    define(client, "ttl.csv", ttl_seconds=3600)
    assert materialize(client)["status"] == "succeeded"
    answer = stub.GetOnlineFeatures(
        _request([1], ["customer_stats:orders"]), metadata=_key(tenant), timeout=30
    )
    value = _plain(answer.results[0].values[0])
    assert value["status"] == "OUTSIDE_TTL" and value["value"] is None
    assert value["event_timestamp"] is not None


def test_grpc_other_tenant_not_found_and_bad_input_invalid_argument(
    platform: Platform, stub: features_pb2_grpc.FeatureServingStub
) -> None:
    owner = platform.new_tenant()
    client = platform.client(owner)
    upload(client, "mine.csv", generate(n_customers=3, n_rows=10).csv())
    define(client, "mine.csv")
    other = platform.new_tenant()
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetOnlineFeatures(_request([1]), metadata=_key(other), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "feature view 'customer_stats' not found"

    with pytest.raises(grpc.RpcError) as caught:
        stub.GetOnlineFeatures(_request([1]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    bad_key = features_pb2.GetOnlineFeaturesRequest(
        features=["customer_stats:orders"],
        entity_rows=[
            features_pb2.EntityRow(join_keys={"customer_id": features_pb2.Value(string_value="x")})
        ],
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetOnlineFeatures(bad_key, metadata=_key(owner), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "customer_id" in (caught.value.details() or "")

    with pytest.raises(grpc.RpcError) as caught:
        stub.GetOnlineFeatures(
            _request([1], ["customer_stats:nope"]), metadata=_key(owner), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'nope'" in (caught.value.details() or "")
