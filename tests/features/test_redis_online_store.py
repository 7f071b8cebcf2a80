"""The Redis online store (real Redis at 127.0.0.1:6379, a key prefix of this run's own):
the same behaviour as the SQL store over REST and gRPC, and one round trip per lookup."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from ml_platform.core.errors import Unavailable
from ml_platform.features.online_redis import RedisOnlineStore
from ml_platform.serving.proto import features_pb2, features_pb2_grpc
from ml_platform.store.features import OnlineRowRecord
from tests.conftest import Platform, serving_plane, start_platform
from tests.features.events import FEATURES, define, generate, materialize, upload
from tests.ports import free_port
from tests.store.test_redis_wire import PrivateRedis, private_redis

__all__ = ["private_redis"]  # the fixture, shared with the wire tests

REDIS_URL = "redis://127.0.0.1:6379/0"
REFS = [f"customer_stats:{name}" for name, _ in FEATURES]


@pytest.fixture(scope="module")
def redis_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    prefix = f"mlp-test-features-{secrets.token_hex(4)}:"
    data: Path = tmp_path_factory.mktemp("redis-features")
    running, server = start_platform(
        "sqlite",
        data,
        database_url_factory("sqlite"),
        redis_url=REDIS_URL,
        feature_redis_key_prefix=prefix,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


def _values(platform: Platform, client: Any, ids: list[int]) -> list[list[dict[str, Any]]]:
    response = client.post(
        "/v1/features/online",
        json={"features": REFS, "entity_rows": [{"customer_id": i} for i in ids]},
    )
    assert response.status_code == 200, response.text
    return [r["values"] for r in response.json()["results"]]


def test_redis_store_serves_latest_values_ttl_push_and_tenancy(redis_platform: Platform) -> None:
    platform = redis_platform
    assert platform.context.features is not None
    assert platform.context.features.store.name == "redis"
    client = platform.client(platform.new_tenant())
    events = generate(n_customers=40, n_rows=400)
    upload(client, "r.csv", events.csv())
    define(client, "r.csv")
    run = materialize(client)
    assert run["status"] == "succeeded" and run["keys_written"] == len(events.latest())
    latest = events.latest()
    ids = sorted(latest)
    for customer, values in zip(ids, _values(platform, client, ids), strict=True):
        assert [v["value"] for v in values] == [latest[customer][n] for n, _ in FEATURES]
        assert {v["status"] for v in values} == {"PRESENT"}
        assert {datetime.fromisoformat(v["event_timestamp"]) for v in values} == {
            latest[customer]["event_timestamp"]
        }

    now = datetime.now(UTC)
    pushed = client.post(
        "/v1/features/views/customer_stats/push",
        json={
            "rows": [
                {"customer_id": ids[0], "event_timestamp": now.isoformat(), "orders": 5},
                {"customer_id": ids[1], "event_timestamp": "2001-01-01T00:00:00Z", "orders": 6},
            ]
        },
    )
    assert pushed.status_code == 200
    first, second = _values(platform, client, ids[:2])
    assert first[0]["value"] == 5 and first[1]["status"] == "MISSING"  # the push had no spend
    assert second[0]["value"] == latest[ids[1]]["orders"]  # older than what is stored: lost

    other = platform.client(platform.new_tenant())
    looked = other.post(
        "/v1/features/online",
        json={"features": REFS, "entity_rows": [{"customer_id": ids[0]}]},
    )
    assert looked.status_code == 404

    # TTL: a view whose only value is two days old, one-hour TTL
    old = (now - timedelta(days=2)).isoformat()
    upload(
        client,
        "old.csv",
        f"customer_id,event_timestamp,orders,spend,segment,active\n1,{old},1,1.0,a,True\n".encode(),
    )
    define(client, "old.csv", view="old_stats", ttl_seconds=3600)
    assert materialize(client, "old_stats")["status"] == "succeeded"
    stale = client.post(
        "/v1/features/online",
        json={"features": ["old_stats:orders"], "entity_rows": [{"customer_id": 1}]},
    ).json()["results"][0]["values"][0]
    assert stale["status"] == "OUTSIDE_TTL" and stale["value"] is None

    # deleting the view removes its keys from Redis
    assert client.delete("/v1/features/views/old_stats").status_code == 204
    store = platform.context.features.store
    assert isinstance(store, RedisOnlineStore)
    prefix = platform.settings.feature_redis_key_prefix
    raw = redis.Redis.from_url(REDIS_URL)
    assert list(raw.scan_iter(match=prefix + "*:old_stats:*")) == []
    raw.close()


def test_a_lookup_of_100_keys_is_one_redis_round_trip(redis_platform: Platform) -> None:
    platform = redis_platform
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    upload(client, "rt.csv", generate(n_customers=100, n_rows=500).csv())
    define(client, "rt.csv")
    assert materialize(client)["status"] == "succeeded"
    assert platform.context.features is not None
    store = platform.context.features.store
    assert isinstance(store, RedisOnlineStore)
    sent: list[str] = []
    real = store._redis.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kwargs)

    store._redis.execute_command = counting  # type: ignore[method-assign]
    try:
        found = platform.context.features.online.lookup(
            tenant.id, REFS, [{"customer_id": i} for i in range(1, 101)]
        )
    finally:
        del store._redis.execute_command
    assert sent == ["MGET"]
    assert len(found) == 100

    # REST reads on the server's event loop over its one redis_wire connection: one MGET there
    assert len(_values(platform, client, [1])) == 1  # the loop's connection exists from here on
    links = list(store._connections._links.values())
    assert len(links) == 1 and links[0].connection is not None
    connection = links[0].connection
    real_send = connection.send

    def counting_send(command: bytes) -> Any:
        sent.append(command.split(b"\r\n")[2].decode())  # *N, $len, then the command's name
        return real_send(command)

    sent.clear()
    connection.send = counting_send  # type: ignore[method-assign]
    try:
        values = _values(platform, client, list(range(1, 101)))
    finally:
        del connection.send
    assert sent == ["MGET"]
    assert [v["value"] for v in values[0]] == [v.value for v in found[0]]


def test_grpc_feature_serving_reads_redis(redis_platform: Platform) -> None:
    platform = redis_platform
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    events = generate(n_customers=10, n_rows=100)
    upload(client, "g.csv", events.csv())
    define(client, "g.csv")
    assert materialize(client)["status"] == "succeeded"
    latest = events.latest()
    with (
        serving_plane(platform) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = features_pb2_grpc.FeatureServingStub(channel)
        request = features_pb2.GetOnlineFeaturesRequest(
            features=["customer_stats:orders", "customer_stats:segment"],
            entity_rows=[
                features_pb2.EntityRow(join_keys={"customer_id": features_pb2.Value(int64_value=i)})
                for i in sorted(latest)
            ],
        )
        answer = stub.GetOnlineFeatures(
            request, metadata=(("x-api-key", tenant.api_key),), timeout=30
        )
    for customer, vector in zip(sorted(latest), answer.results, strict=True):
        orders, segment = vector.values
        assert orders.value.int64_value == latest[customer]["orders"]
        assert segment.value.string_value == latest[customer]["segment"]
        assert orders.status == features_pb2.PRESENT


def test_the_async_read_is_unavailable_when_redis_goes_away_and_recovers(
    private_redis: PrivateRedis,
) -> None:
    """The request path's read (REST, gRPC, prediction-time inputs) answers Unavailable, never
    a raw connection error, while Redis is down, and reads again on the next call after it is
    back (the loop's connection is reopened)."""
    store = RedisOnlineStore(private_redis.url, "p:")
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    store.write("t1", "v", [OnlineRowRecord("7", {"x": 1.5}, stamp)])

    async def scenario() -> None:
        first = await store.read_async("t1", [("v", "7"), ("v", "8")])
        assert list(first) == [("v", "7")] and first[("v", "7")].values == {"x": 1.5}
        assert first[("v", "7")].event_ts == stamp
        private_redis.stop()
        with pytest.raises(Unavailable, match="unreachable"):
            await store.read_async("t1", [("v", "7")])
        private_redis.start()
        store.write("t1", "v", [OnlineRowRecord("7", {"x": 2.5}, stamp + timedelta(seconds=1))])
        again = await store.read_async("t1", [("v", "7")])
        assert again[("v", "7")].values == {"x": 2.5}

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_the_async_read_on_a_closed_port_is_unavailable() -> None:
    store = RedisOnlineStore(f"redis://127.0.0.1:{free_port()}/0", "p:")
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            asyncio.run(store.read_async("t1", [("v", "7")]))
    finally:
        store.close()
