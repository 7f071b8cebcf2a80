"""The SDK's ``client.features`` (sync and async alike) and ``ml_platform.runtime``'s
point-in-time join against a live server."""

from __future__ import annotations

import inspect
import random
from datetime import timedelta

import pandas as pd

from ml_platform import runtime
from ml_platform.client import AsyncClient, Client
from ml_platform.client._features import AsyncFeatures, Features
from tests.conftest import Platform
from tests.features.events import FEATURES, START, define, generate, materialize, upload

REFS = [f"customer_stats:{name}" for name, _ in FEATURES]


def _public(cls: type) -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(member).parameters)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_sync_and_async_features_have_the_same_methods_and_signatures() -> None:
    assert _public(Features) == _public(AsyncFeatures)
    assert set(_public(Features)) == {
        "get_historical_features",
        "get_online_features",
        "materialize",
        "push",
    }


async def test_sdk_online_historical_and_runtime_agree_with_the_events(platform: Platform) -> None:
    tenant = platform.new_tenant()
    events = generate(n_customers=20, n_rows=400, seed=5)
    upload(platform.client(tenant), "sdk.csv", events.csv())
    define(platform.client(tenant), "sdk.csv")
    assert materialize(platform.client(tenant))["status"] == "succeeded"
    latest = events.latest()
    rng = random.Random(1)
    entity_df = pd.DataFrame(
        {
            "customer_id": [rng.randrange(1, 21) for _ in range(200)],
            "event_timestamp": [
                START + timedelta(minutes=rng.randrange(0, 60 * 24 * 20)) for _ in range(200)
            ],
        }
    )
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)

    with Client(base_url=platform.base_url, api_key=tenant.api_key, max_retries=0) as client:
        online = client.features.get_online_features(REFS, [{"customer_id": 1}])
        training = client.features.get_historical_features(entity_df, REFS)
        via_runtime = runtime.get_historical_features(entity_df, REFS, client=client)
    async with AsyncClient(base_url=platform.base_url, api_key=tenant.api_key) as aclient:
        aonline = await aclient.features.get_online_features(REFS, [{"customer_id": 1}])
        atraining = await aclient.features.get_historical_features(entity_df, REFS)

    assert online.model_dump() == aonline.model_dump()
    assert [v.value for v in online.results[0].values] == [latest[1][n] for n, _ in FEATURES]
    pd.testing.assert_frame_equal(training, atraining)
    pd.testing.assert_frame_equal(training, via_runtime)
    assert list(training.columns) == ["customer_id", "event_timestamp", *dict(FEATURES)]
    assert training["event_timestamp"].tolist() == entity_df["event_timestamp"].tolist()
    for row in training.itertuples(index=False):
        expected = events.as_of(row.customer_id, row.event_timestamp.to_pydatetime(), None)
        got = [getattr(row, name) for name, _ in FEATURES]
        if expected is None:
            assert all(v is None or pd.isna(v) for v in got)
        else:
            assert got == [expected[name] for name, _ in FEATURES]
