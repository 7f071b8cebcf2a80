"""Feature store over REST on both backends: definitions checked against the real file,
materialization, online lookups, TTL, push, point-in-time training data, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from ml_platform.store.audit import AuditStore
from tests.conftest import Platform
from tests.features.events import FEATURES, START, define, generate, materialize, upload

REFS = [f"customer_stats:{name}" for name, _ in FEATURES]


def _online(client: httpx.Client, ids: list[int], refs: list[str] = REFS) -> list[dict]:
    response = client.post(
        "/v1/features/online",
        json={"features": refs, "entity_rows": [{"customer_id": i} for i in ids]},
    )
    assert response.status_code == 200, response.text
    results: list[dict] = response.json()["results"]
    return results


def test_online_lookup_equals_the_latest_value_per_key(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    events = generate()
    upload(client, "events/customers.csv", events.csv())
    view = define(client, "events/customers.csv")
    assert view["version"] == 1 and view["source"] == {
        "kind": "file",
        "path": "data/events/customers.csv",
        "format": "csv",
    }
    run = materialize(client)
    assert run["status"] == "succeeded", run
    latest = events.latest()
    assert run["rows_read"] == len(events.rows) and run["keys_written"] == len(latest)
    newest = max(r["event_timestamp"] for r in events.rows)
    assert datetime.fromisoformat(run["watermark_to"]) == newest

    ids = [*sorted(latest), 10_000]  # and one key that was never seen
    results = _online(client, ids)
    for customer, result in zip(ids, results, strict=True):
        assert result["entity"] == {"customer_id": customer}
        values = result["values"]
        assert [v["feature"] for v in values] == REFS
        if customer not in latest:
            assert {v["status"] for v in values} == {"MISSING"}
            assert all(v["value"] is None for v in values)
            continue
        expected = latest[customer]
        assert {v["status"] for v in values} == {"PRESENT"}
        assert [v["value"] for v in values] == [expected[name] for name, _ in FEATURES]
        for v in values:
            assert datetime.fromisoformat(v["event_timestamp"]) == expected["event_timestamp"]

    history = client.get("/v1/features/views/customer_stats/materializations").json()
    assert [m["id"] for m in history["materializations"]] == [run["id"]]


def test_materialization_is_incremental_by_event_time(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    events = generate(n_customers=20, n_rows=200)
    upload(client, "inc.csv", events.csv())
    define(client, "data/inc.csv")
    first = materialize(client)
    assert first["status"] == "succeeded"
    before = events.latest()
    assert 3 in before
    newest = max(r["event_timestamp"] for r in events.rows)
    # appended rows: two newer, one older than the watermark (it is skipped: already past)
    later = [
        {
            **events.rows[0],
            "customer_id": 1,
            "event_timestamp": newest + timedelta(hours=1),
            "orders": 999,
        },
        {
            **events.rows[0],
            "customer_id": 2,
            "event_timestamp": newest + timedelta(hours=2),
            "orders": 998,
        },
        {
            **events.rows[0],
            "customer_id": 3,
            "event_timestamp": START - timedelta(days=1),
            "orders": 997,
        },
    ]
    events.rows.extend(later)
    upload(client, "inc.csv", events.csv())
    second = materialize(client)
    assert second["status"] == "succeeded", second
    assert second["watermark_from"] == first["watermark_to"]
    assert (second["rows_read"], second["keys_written"]) == (2, 2)
    results = _online(client, [1, 2, 3], ["customer_stats:orders"])
    assert [r["values"][0]["value"] for r in results] == [999, 998, before[3]["orders"]]


def test_a_value_past_its_ttl_reports_outside_ttl(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    now = datetime.now(UTC)
    csv = (
        "customer_id,event_timestamp,orders,spend,segment,active\n"
        f"1,{(now - timedelta(days=3)).isoformat()},5,1.5,gold,True\n"
        f"2,{(now - timedelta(minutes=5)).isoformat()},6,2.5,silver,False\n"
    ).encode()
    upload(client, "ttl.csv", csv)
    define(client, "ttl.csv", ttl_seconds=86_400)
    assert materialize(client)["status"] == "succeeded"
    stale, fresh = _online(client, [1, 2], ["customer_stats:orders"])
    assert stale["values"][0]["status"] == "OUTSIDE_TTL" and stale["values"][0]["value"] is None
    assert stale["values"][0]["event_timestamp"] is not None
    assert fresh["values"][0] == {
        "feature": "customer_stats:orders",
        "value": 6,
        "status": "PRESENT",
        "event_timestamp": fresh["values"][0]["event_timestamp"],
    }


def test_push_is_visible_to_the_next_lookup_and_older_pushes_lose(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    events = generate(n_customers=5, n_rows=50)
    upload(client, "push.csv", events.csv())
    define(client, "push.csv")
    assert materialize(client)["status"] == "succeeded"
    ts = (datetime.now(UTC)).isoformat()
    pushed = client.post(
        "/v1/features/views/customer_stats/push",
        json={
            "rows": [
                {
                    "customer_id": 1,
                    "event_timestamp": ts,
                    "orders": 4242,
                    "spend": 1.0,
                    "segment": "new",
                    "active": True,
                }
            ]
        },
    )
    assert pushed.status_code == 200, pushed.text
    assert pushed.json() == {"feature_view": "customer_stats", "rows_written": 1}
    (row,) = _online(client, [1])
    assert [v["value"] for v in row["values"]] == [4242, 1.0, "new", True]
    older = client.post(
        "/v1/features/views/customer_stats/push",
        json={"rows": [{"customer_id": 1, "event_timestamp": "2020-01-01T00:00:00Z", "orders": 1}]},
    )
    assert older.status_code == 200
    (row,) = _online(client, [1])
    assert row["values"][0]["value"] == 4242
    # a re-materialization of older source rows does not undo the push either
    assert materialize(client)["status"] == "succeeded"
    assert _online(client, [1])[0]["values"][0]["value"] == 4242

    bad = client.post(
        "/v1/features/views/customer_stats/push",
        json={"rows": [{"customer_id": "x", "event_timestamp": ts}]},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "body.rows[0].customer_id"


def test_historical_features_equal_a_brute_force_point_in_time_join(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    events = generate(n_customers=60, n_rows=1500, seed=11)
    upload(client, "hist.csv", events.csv())
    ttl = timedelta(days=3)
    define(client, "hist.csv", ttl_seconds=int(ttl.total_seconds()))
    import random

    rng = random.Random(3)
    entity_rows = []
    for _ in range(1000):
        ts = START + timedelta(minutes=rng.randrange(-600, 60 * 24 * 22))
        entity_rows.append({"customer_id": rng.randrange(1, 65), "event_timestamp": ts})
    response = client.post(
        "/v1/features/historical",
        json={
            "features": REFS,
            "entity_rows": [
                {**r, "event_timestamp": r["event_timestamp"].isoformat()} for r in entity_rows
            ],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == [
        "customer_id",
        "event_timestamp",
        "orders",
        "spend",
        "segment",
        "active",
    ]
    found = 0
    for asked, got in zip(entity_rows, body["rows"], strict=True):
        assert got["customer_id"] == asked["customer_id"]
        expected = events.as_of(asked["customer_id"], asked["event_timestamp"], ttl)
        if expected is None:
            assert [got[n] for n, _ in FEATURES] == [None] * len(FEATURES)
        else:
            found += 1
            assert [got[n] for n, _ in FEATURES] == [expected[n] for n, _ in FEATURES]
    assert 200 < found < 1000  # the data exercises both answers


def test_a_view_is_checked_against_the_real_columns_of_its_source(platform: Platform) -> None:
    client = platform.client(platform.new_tenant())
    upload(client, "cols.csv", generate(n_customers=3, n_rows=10).csv())
    client.post(
        "/v1/features/entities",
        json={"name": "customer", "join_keys": {"customer_id": "int64"}},
    )
    base = {
        "name": "v",
        "entity": "customer",
        "source": {"path": "cols.csv"},
        "timestamp_field": "event_timestamp",
    }
    missing = client.post(
        "/v1/features/views",
        json={
            **base,
            "features": {"orders": "int64", "refunds": "int64"},
        },
    )
    assert missing.status_code == 422, missing.text
    problem = missing.json()
    assert problem["errors"][0]["path"] == "body.features.refunds"
    assert "'refunds'" in problem["detail"] and "data/cols.csv" in problem["detail"]
    mistyped = client.post("/v1/features/views", json={**base, "features": {"segment": "float64"}})
    assert mistyped.status_code == 422
    assert "'segment'" in mistyped.json()["detail"] and "float64" in mistyped.json()["detail"]
    no_ts = client.post(
        "/v1/features/views",
        json={**base, "timestamp_field": "when", "features": {"orders": "int64"}},
    )
    assert no_ts.status_code == 422
    assert no_ts.json()["errors"][0]["path"] == "body.timestamp_field"
    no_file = client.post(
        "/v1/features/views",
        json={
            **base,
            "source": {"path": "nope.csv"},
            "features": {"orders": "int64"},
        },
    )
    assert no_file.status_code == 404 and "data/nope.csv" in no_file.json()["detail"]

    ok = client.post("/v1/features/views", json={**base, "features": {"orders": "int64"}})
    assert ok.status_code == 201
    again = client.put(
        "/v1/features/views/v",
        json={k: v for k, v in base.items() if k != "name"}
        | {"features": {"orders": "int64", "spend": "float64"}},
    )
    assert again.status_code == 200 and again.json()["version"] == 2
    assert client.get("/v1/features/views/v", params={"version": 1}).json()["version"] == 1


def test_another_tenants_views_answer_404(platform: Platform) -> None:
    owner = platform.client(platform.new_tenant())
    upload(owner, "mine.csv", generate(n_customers=3, n_rows=10).csv())
    define(owner, "mine.csv")
    assert materialize(owner)["status"] == "succeeded"
    other = platform.client(platform.new_tenant())
    assert other.get("/v1/features/views/customer_stats").status_code == 404
    assert other.get("/v1/features/entities/customer").status_code == 404
    assert other.post("/v1/features/views/customer_stats/materializations").status_code == 404
    looked = other.post(
        "/v1/features/online",
        json={"features": ["customer_stats:orders"], "entity_rows": [{"customer_id": 1}]},
    )
    assert looked.status_code == 404
    assert looked.json()["detail"] == "feature view 'customer_stats' not found"
    pushed = other.post(
        "/v1/features/views/customer_stats/push",
        json={"rows": [{"customer_id": 1, "event_timestamp": "2026-01-01T00:00:00Z"}]},
    )
    assert pushed.status_code == 404
    hist = other.post(
        "/v1/features/historical",
        json={
            "features": ["customer_stats:orders"],
            "entity_rows": [{"customer_id": 1, "event_timestamp": "2026-01-01T00:00:00Z"}],
        },
    )
    assert hist.status_code == 404


def test_lookups_are_reads_for_the_audit_trail_and_pushes_are_mutations(
    platform: Platform,
) -> None:
    tenant = platform.new_tenant("audit")
    client = platform.client(tenant)
    upload(client, "audit.csv", generate(n_customers=3, n_rows=10).csv())
    define(client, "audit.csv")
    assert materialize(client)["status"] == "succeeded"

    def actions() -> list[str]:
        events = AuditStore(platform.db).events(tenant_id=tenant.id, limit=1000)
        return sorted(e.action for e in events)

    before = actions()
    assert "features.create" in before  # a POST that creates (the view) is audited
    _online(client, [1, 2])
    hist = client.post(
        "/v1/features/historical",
        json={
            "features": ["customer_stats:orders"],
            "entity_rows": [{"customer_id": 1, "event_timestamp": "2026-12-01T00:00:00Z"}],
        },
    )
    assert hist.status_code == 200, hist.text
    missing = client.post(
        "/v1/features/online",
        json={"features": ["nope:orders"], "entity_rows": [{"customer_id": 1}]},
    )
    assert missing.status_code == 404  # a refused lookup is still a read
    assert actions() == before
    pushed = client.post(
        "/v1/features/views/customer_stats/push",
        json={"rows": [{"customer_id": 1, "event_timestamp": "2026-12-01T00:00:00Z"}]},
    )
    assert pushed.status_code == 200, pushed.text
    assert actions() == sorted([*before, "features.push.push"])
    # a lookup with a bad key is an authentication failure like any other (one event)
    bad = platform.client(**{"X-API-Key": tenant.api_key + "x"}).post(
        "/v1/features/online",
        json={"features": REFS, "entity_rows": [{"customer_id": 1}]},
    )
    assert bad.status_code == 401
    failed = [e for e in AuditStore(platform.db).events(limit=1000) if e.action == "auth.failed"]
    assert any(e.route == "/v1/features/online" for e in failed)


def test_migration_0010_matches_the_tables(platform: Platform) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ml_platform.store.base import Base

    with platform.db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if "feature_" in repr(d)] == []


def test_a_parquet_source_serves_the_same_values(platform: Platform) -> None:
    import io

    import pandas as pd

    client = platform.client(platform.new_tenant())
    events = generate(n_customers=15, n_rows=150, seed=9)
    frame = pd.DataFrame(events.rows)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)  # event_timestamp as a real timestamp column
    upload(client, "p/events.parquet", buffer.getvalue())
    view = define(client, "data/p/events.parquet")
    assert view["source"] == {"kind": "file", "path": "data/p/events.parquet", "format": "parquet"}
    assert materialize(client)["status"] == "succeeded"
    latest = events.latest()
    ids = sorted(latest)
    for customer, result in zip(ids, _online(client, ids), strict=True):
        assert [v["value"] for v in result["values"]] == [latest[customer][n] for n, _ in FEATURES]
    garbage = client.post(
        "/v1/features/views",
        json={
            "name": "broken",
            "entity": "customer",
            "features": {"orders": "int64"},
            "source": {"path": "p/events.parquet", "format": "csv"},
            "timestamp_field": "event_timestamp",
        },
    )
    assert garbage.status_code == 422  # parquet bytes read as CSV: named, not a 500
