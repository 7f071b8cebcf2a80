"""A feature view over a file of a succeeded training job's output, on both backends: checked
at creation like a data-area file, materialized and joined point in time the same way, and
refused with a clear status for another tenant's job, an unfinished job, a missing file."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import httpx

from ml_platform.core.ids import new_id
from ml_platform.store.jobs import JobRepository
from tests.conftest import Platform
from tests.features.events import FEATURES, START, generate, materialize, upload
from tests.registry.conftest import job_output_dir, succeeded_job

REFS = [f"job_stats:{name}" for name, _ in FEATURES]


def _entity(client: httpx.Client) -> None:
    created = client.post(
        "/v1/features/entities", json={"name": "customer", "join_keys": {"customer_id": "int64"}}
    )
    assert created.status_code == 201, created.text


def _view(source: dict[str, Any], name: str = "job_stats") -> dict[str, Any]:
    return {
        "name": name,
        "entity": "customer",
        "features": dict(FEATURES),
        "source": source,
        "timestamp_field": "event_timestamp",
    }


def _job_source(job_id: str, path: str = "features.csv") -> dict[str, Any]:
    return {"kind": "job_output", "job_id": job_id, "path": path}


def test_a_job_output_source_materializes_and_joins_like_a_file(platform: Platform) -> None:
    tenant = platform.new_tenant()
    client = platform.client(tenant)
    events = generate(n_customers=30, n_rows=400, seed=5)
    job_id = succeeded_job(platform, tenant, {"features.csv": events.csv()})
    _entity(client)
    created = client.post("/v1/features/views", json=_view(_job_source(job_id)))
    assert created.status_code == 201, created.text
    assert created.json()["source"] == {
        "kind": "job_output",
        "job_id": job_id,
        "path": "features.csv",
        "format": "csv",
    }
    run = materialize(client, "job_stats")
    assert run["status"] == "succeeded", run
    latest = events.latest()
    assert (run["rows_read"], run["keys_written"]) == (len(events.rows), len(latest))
    ids = sorted(latest)
    online = client.post(
        "/v1/features/online",
        json={"features": REFS, "entity_rows": [{"customer_id": i} for i in ids]},
    )
    assert online.status_code == 200, online.text
    for customer, result in zip(ids, online.json()["results"], strict=True):
        assert [v["value"] for v in result["values"]] == [
            latest[customer][name] for name, _ in FEATURES
        ]

    rng = random.Random(1)
    asked = [
        {
            "customer_id": rng.randrange(1, 31),
            "event_timestamp": START + timedelta(minutes=rng.randrange(0, 60 * 24 * 20)),
        }
        for _ in range(200)
    ]
    hist = client.post(
        "/v1/features/historical",
        json={
            "features": REFS,
            "entity_rows": [
                {**r, "event_timestamp": r["event_timestamp"].isoformat()} for r in asked
            ],
        },
    )
    assert hist.status_code == 200, hist.text
    for row, got in zip(asked, hist.json()["rows"], strict=True):
        expected = events.as_of(row["customer_id"], row["event_timestamp"], None)
        wanted = [None] * len(FEATURES) if expected is None else [expected[n] for n, _ in FEATURES]
        assert [got[n] for n, _ in FEATURES] == wanted

    # a new version may switch the kind of its source, and back
    upload(client, "switched.csv", events.csv())
    body = {k: v for k, v in _view({"path": "switched.csv"}).items() if k != "name"}
    to_file = client.put("/v1/features/views/job_stats", json=body)
    assert to_file.status_code == 200, to_file.text
    assert to_file.json()["version"] == 2
    assert to_file.json()["source"] == {
        "kind": "file",
        "path": "data/switched.csv",
        "format": "csv",
    }
    back = client.put("/v1/features/views/job_stats", json={**body, "source": _job_source(job_id)})
    assert back.status_code == 200 and back.json()["source"]["kind"] == "job_output"
    first = client.get("/v1/features/views/job_stats", params={"version": 1}).json()
    assert first["source"]["job_id"] == job_id


def test_a_parquet_job_output_is_read_by_its_extension(platform: Platform) -> None:
    import io

    import pandas as pd

    tenant = platform.new_tenant()
    client = platform.client(tenant)
    events = generate(n_customers=10, n_rows=80, seed=3)
    buffer = io.BytesIO()
    pd.DataFrame(events.rows).to_parquet(buffer, index=False)
    job_id = succeeded_job(platform, tenant, {})
    nested = job_output_dir(platform, tenant, job_id) / "out"
    nested.mkdir()
    (nested / "features.parquet").write_bytes(buffer.getvalue())
    _entity(client)
    created = client.post(
        "/v1/features/views", json=_view(_job_source(job_id, "out/features.parquet"))
    )
    assert created.status_code == 201, created.text
    assert created.json()["source"]["format"] == "parquet"
    assert materialize(client, "job_stats")["status"] == "succeeded"


def test_job_output_sources_are_refused_with_a_clear_status(platform: Platform) -> None:
    owner = platform.new_tenant()
    client = platform.client(owner)
    events = generate(n_customers=3, n_rows=20)
    job_id = succeeded_job(platform, owner, {"features.csv": events.csv()})
    _entity(client)

    other = platform.client(platform.new_tenant())
    _entity(other)
    foreign = other.post("/v1/features/views", json=_view(_job_source(job_id)))
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["detail"] == f"training job {job_id!r} not found"
    unknown = client.post("/v1/features/views", json=_view(_job_source(new_id("job"))))
    assert unknown.status_code == 404

    pending_id = new_id("job")
    with platform.db.transaction() as session:
        JobRepository(session, owner.id).add(
            job_id=pending_id,
            name="still-pending",
            framework="sklearn",
            spec={"output_path": f"outputs/{pending_id}", "tenant_id": owner.id},
            env_vars={},
            tags={},
            created_by="test",
        )
    pending = client.post("/v1/features/views", json=_view(_job_source(pending_id)))
    assert pending.status_code == 409, pending.text
    assert "is pending" in pending.json()["detail"] and pending_id in pending.json()["detail"]

    missing = client.post("/v1/features/views", json=_view(_job_source(job_id, "nope.csv")))
    assert missing.status_code == 404
    assert "'nope.csv'" in missing.json()["detail"] and job_id in missing.json()["detail"]

    columns = client.post(
        "/v1/features/views",
        json={**_view(_job_source(job_id)), "features": {"orders": "int64", "refunds": "int64"}},
    )
    assert columns.status_code == 422, columns.text
    assert columns.json()["errors"][0]["path"] == "body.features.refunds"
    assert "features.csv" in columns.json()["detail"] and job_id in columns.json()["detail"]

    for bad in ("../features.csv", "a/../../x.csv", "/etc/passwd"):
        escaped = client.post("/v1/features/views", json=_view(_job_source(job_id, bad)))
        assert escaped.status_code == 422, (bad, escaped.text)
    no_job = client.post(
        "/v1/features/views", json=_view({"kind": "job_output", "path": "features.csv"})
    )
    assert no_job.status_code == 422
    assert any("job_id" in e["path"] for e in no_job.json()["errors"])
    wrong_kind = client.post("/v1/features/views", json=_view({"kind": "s3", "path": "x.csv"}))
    assert wrong_kind.status_code == 422

    # a symbolic link the job left in its output is never followed out of it
    victim = platform.new_tenant()
    upload(platform.client(victim), "secret.csv", events.csv())
    victim_file = platform.settings.data_dir.resolve() / "tenants" / victim.id / "data/secret.csv"
    (job_output_dir(platform, owner, job_id) / "link.csv").symlink_to(victim_file)
    linked = client.post("/v1/features/views", json=_view(_job_source(job_id, "link.csv")))
    assert linked.status_code in (404, 422), linked.text
    assert str(platform.settings.data_dir) not in linked.text  # never a server path


def test_the_openapi_schema_shows_both_source_kinds_as_a_discriminated_union(
    platform: Platform,
) -> None:
    spec = platform.client().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in ("FeatureViewCreate", "FeatureViewUpdate", "FeatureView"):
        source = schemas[model]["properties"]["source"]
        assert source["discriminator"]["propertyName"] == "kind", source
        assert source["discriminator"]["mapping"] == {
            "file": "#/components/schemas/FileSource",
            "job_output": "#/components/schemas/JobOutputSource",
        }
        assert {s["$ref"] for s in source["oneOf"]} == set(
            source["discriminator"]["mapping"].values()
        )
    assert schemas["JobOutputSource"]["required"] == ["kind", "job_id", "path"]
    assert "kind" not in schemas["FileSource"].get("required", [])  # old bodies still valid
