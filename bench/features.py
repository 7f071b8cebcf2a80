"""Online feature serving: gRPC ``FeatureServing.GetOnlineFeatures`` latency and throughput.

    .venv/bin/python bench/features.py [--seconds 5] [--no-write]

Starts a real ``mlp server`` subprocess (SQLite, serving plane on) twice: with the embedded
SQL online store and with Redis (127.0.0.1:6379, a key prefix of its own). Each run uploads
a 10-feature view over 1,000 entity keys, materializes it, then calls GetOnlineFeatures from
this process for ``--seconds`` per row, one call at a time (latency) and from 8 concurrent
callers (throughput), with 1 and 100 entity keys per call. ``lookups/s`` counts entity keys
(x 10 features each) answered per second.

``--feast``: the same data through Feast's feature server (``feast serve``, HTTP JSON, Redis
online store, one worker) from ``bench/.venvs/feast`` (created here with ``feast[redis]`` if
missing, never in the project venv), against our REST ``POST /v1/features/online`` (HTTP
JSON too) and gRPC, in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    free_port,
    median,
    percentile,
    start_platform_server,
    stop_server,
    write_section,
)
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.serving.proto import features_pb2, features_pb2_grpc
from ml_platform.store.db import Database

N_KEYS = 1_000
REDIS_URL = "redis://127.0.0.1:6379/0"
N_FEATURES = 10
CONCURRENCY = 8
REFS = [f"bench_stats:f{i}" for i in range(N_FEATURES)]


def events_csv() -> bytes:
    rng = random.Random(0)
    start = datetime.now(UTC) - timedelta(days=1)
    out = io.StringIO()
    out.write("customer_id,event_timestamp," + ",".join(f"f{i}" for i in range(N_FEATURES)) + "\n")
    for key in range(1, N_KEYS + 1):
        for _ in range(3):
            ts = start + timedelta(seconds=rng.randrange(0, 80_000))
            values = ",".join(f"{rng.random():.6f}" for _ in range(N_FEATURES))
            out.write(f"{key},{ts.isoformat()},{values}\n")
    return out.getvalue().encode()


def prepare(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
        assert http.put("/v1/data/bench/events.csv", content=events_csv()).status_code == 201
        assert (
            http.post(
                "/v1/features/entities",
                json={"name": "customer", "join_keys": {"customer_id": "int64"}},
            ).status_code
            == 201
        )
        created = http.post(
            "/v1/features/views",
            json={
                "name": "bench_stats",
                "entity": "customer",
                "features": {f"f{i}": "float64" for i in range(N_FEATURES)},
                "source": {"path": "bench/events.csv"},
                "timestamp_field": "event_timestamp",
                "ttl_seconds": 7 * 86_400,
            },
        )
        assert created.status_code == 201, created.text
        location = http.post("/v1/features/views/bench_stats/materializations").headers["Location"]
        while (run := http.get(location).json())["status"] == "running":
            time.sleep(0.05)
        assert run["status"] == "succeeded" and run["keys_written"] == N_KEYS, run


def request(n_keys: int, rng: random.Random) -> features_pb2.GetOnlineFeaturesRequest:
    return features_pb2.GetOnlineFeaturesRequest(
        features=REFS,
        entity_rows=[
            features_pb2.EntityRow(
                join_keys={
                    "customer_id": features_pb2.Value(int64_value=rng.randrange(1, N_KEYS + 1))
                }
            )
            for _ in range(n_keys)
        ],
    )


def timed(call: object, payloads: list[object], n_keys: int, seconds: float) -> dict[str, float]:
    """Latency from one caller, then lookups/s from CONCURRENCY callers (``call(payload)``)."""
    fn = call  # type: ignore[assignment]
    for payload in payloads[:50]:
        fn(payload)  # type: ignore[operator]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        fn(payloads[i % len(payloads)])  # type: ignore[operator]
        latencies.append((time.perf_counter() - started) * 1000)
        i += 1
    calls = [0] * CONCURRENCY
    errors = [0] * CONCURRENCY
    stop = time.perf_counter() + seconds

    def caller(slot: int) -> None:
        j = slot
        while time.perf_counter() < stop:
            try:
                fn(payloads[j % len(payloads)])  # type: ignore[operator]
                calls[slot] += 1
            except Exception:  # counted and shown: a failed call is no lookup
                errors[slot] += 1
            j += CONCURRENCY

    threads = [threading.Thread(target=caller, args=(s,)) for s in range(CONCURRENCY)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return {
        "p50": median(latencies),
        "p99": percentile(latencies, 99),
        "lookups": sum(calls) * n_keys / elapsed,
        "errors": sum(errors),
    }


def http_caller(url: str, headers: dict[str, str]) -> object:
    """POST a JSON body to ``url``; one keep-alive client per calling thread."""
    local = threading.local()

    def call(body: object) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(headers=headers, timeout=30)
        local.http.post(url, json=body).raise_for_status()

    return call


def measure_rest(base: str, key: str, n_keys: int, seconds: float) -> dict[str, float]:
    rng = random.Random(n_keys)
    bodies = [
        {
            "features": REFS,
            "entity_rows": [{"customer_id": rng.randrange(1, N_KEYS + 1)} for _ in range(n_keys)],
        }
        for _ in range(200)
    ]
    call = http_caller(f"{base}/v1/features/online", {"X-API-Key": key})
    return timed(call, bodies, n_keys, seconds)  # type: ignore[arg-type]


def measure(target: str, key: str, n_keys: int, seconds: float) -> dict[str, float]:
    metadata = (("x-api-key", key),)
    rng = random.Random(n_keys)
    requests = [request(n_keys, rng) for _ in range(200)]
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = features_pb2_grpc.FeatureServingStub(channel)
        for req in requests[:50]:  # warm-up: connections, definition cache
            answer = stub.GetOnlineFeatures(req, metadata=metadata, timeout=30)
            assert all(v.status == features_pb2.PRESENT for r in answer.results for v in r.values)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            stub.GetOnlineFeatures(requests[i % len(requests)], metadata=metadata, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            i += 1
        calls = [0] * CONCURRENCY
        stop = time.perf_counter() + seconds

        def caller(slot: int) -> None:
            j = slot
            while time.perf_counter() < stop:
                stub.GetOnlineFeatures(requests[j % len(requests)], metadata=metadata, timeout=30)
                calls[slot] += 1
                j += CONCURRENCY

        threads = [threading.Thread(target=caller, args=(s,)) for s in range(CONCURRENCY)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    return {
        "p50": median(latencies),
        "p99": percentile(latencies, 99),
        "lookups": sum(calls) * n_keys / elapsed,
    }


def run_store(store: str, seconds: float) -> dict[tuple[str, int], dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'mlp.db'}"
        db = Database(url)
        db.upgrade()
        auth = AuthService(db, TokenCodec("unused"))
        auth.create_tenant("bench")
        key = auth.create_api_key("bench", "bench").plaintext
        db.dispose()
        env = {"ML_PLATFORM_SERVING_WORKERS": "1", "ML_PLATFORM_RATE_LIMIT_ENABLED": "false"}
        prefix = f"mlp-bench-{secrets.token_hex(4)}:"
        if store == "redis":
            env |= {
                "ML_PLATFORM_REDIS_URL": REDIS_URL,
                "ML_PLATFORM_FEATURE_REDIS_KEY_PREFIX": prefix,
            }
        proc, base, target = start_platform_server(
            data_dir, database_url=url, serving=True, env=env
        )
        try:
            assert target is not None
            prepare(base, key)
            out = {(f"{store}, gRPC", n): measure(target, key, n, seconds) for n in (1, 100)}
            if store == "redis":
                for n in (1, 100):
                    out[(f"{store}, REST", n)] = measure_rest(base, key, n, seconds)
            return out
        finally:
            stop_server(proc)
            if store == "redis":
                drop_keys(prefix)


def drop_keys(prefix: str) -> None:
    """Remove this run's online values from Redis (each run materializes under its own prefix)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(batch), 1000):
            client.delete(*batch[start : start + 1000])
    finally:
        client.close()


FEAST_DEFS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
source = FileSource(path="events.parquet", timestamp_field="event_timestamp")
bench_stats = FeatureView(name="bench_stats", entities=[customer], ttl=timedelta(days=7),
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(10)], source=source)
"""


def feast_venv() -> Path:
    venv = Path(__file__).resolve().parent / ".venvs" / "feast"
    if not (venv / "bin" / "feast").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "feast[redis]==0.67.0"], check=True
        )
    return venv


def run_feast(seconds: float) -> dict[tuple[str, int], dict[str, float]]:
    import pandas as pd

    venv = feast_venv()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "feature_store.yaml").write_text(
            "project: bench\nregistry: registry.db\nprovider: local\nonline_store:\n"
            '  type: redis\n  connection_string: "127.0.0.1:6379,db=2"\n'
            "entity_key_serialization_version: 3\n"
        )
        (repo / "defs.py").write_text(FEAST_DEFS)
        frame = pd.read_csv(io.BytesIO(events_csv()))
        frame["event_timestamp"] = pd.to_datetime(
            frame["event_timestamp"], utc=True, format="ISO8601"
        )
        frame.to_parquet(repo / "events.parquet", index=False)
        feast = str(venv / "bin" / "feast")
        subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        subprocess.run(
            [feast, "materialize-incremental", now], cwd=repo, check=True, capture_output=True
        )
        port = free_port()
        proc = subprocess.Popen(
            [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/get-online-features"
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.post(
                        url, json={"features": REFS, "entities": {"customer_id": [1]}}, timeout=5
                    ).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            out = {}
            for n in (1, 100):
                rng = random.Random(n)
                bodies = [
                    {
                        "features": REFS,
                        "entities": {
                            "customer_id": [rng.randrange(1, N_KEYS + 1) for _ in range(n)]
                        },
                    }
                    for _ in range(200)
                ]
                call = http_caller(url, {})
                out[("Feast (Redis), REST", n)] = timed(call, bodies, n, seconds)  # type: ignore[arg-type]
            return out
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def feast_targets(results: dict[tuple[str, int], dict[str, float]]) -> list[str]:
    """Issue 14's target, row by row: ahead of Feast (same data, same Redis, same client) on
    p50, p99 and lookups/s, for each of our APIs on the Redis online store."""
    lines = [
        "Target (issue 14): ahead of Feast on every row. Ratios are ours / Feast's (latency: "
        "lower is ahead; lookups/s: higher is ahead).",
        "",
        "| ours | keys per call | p50 ratio | p99 ratio | lookups/s ratio | ahead on all three |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for api in ("gRPC", "REST"):
        for n in (1, 100):
            ours = results.get((f"ml-platform redis, {api}", n))
            feast = results.get(("Feast (Redis), REST", n))
            if ours is None or feast is None:
                continue
            p50, p99 = ours["p50"] / feast["p50"], ours["p99"] / feast["p99"]
            rate = ours["lookups"] / feast["lookups"]
            ahead = "yes" if p50 < 1 and p99 < 1 and rate > 1 else "no"
            lines.append(f"| redis, {api} | {n} | {p50:.2f} | {p99:.2f} | {rate:.2f} | {ahead} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--feast", action="store_true", help="also measure Feast's server")
    args = parser.parse_args()
    lines = [
        f"GetOnlineFeatures over gRPC, {N_FEATURES} float features per key, {N_KEYS} keys "
        "materialized, one serving worker; latency from one caller, lookups/s (entity keys "
        f"answered per second) from {CONCURRENCY} concurrent callers.",
        "",
        "| server, online store, API | keys per call | p50 ms | p99 ms | lookups/s | failed calls |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    results: dict[tuple[str, int], dict[str, float]] = {}
    for store in ("sql", "redis"):
        results |= {
            (f"ml-platform {k[0]}", k[1]): v for k, v in run_store(store, args.seconds).items()
        }
    if args.feast:
        results |= run_feast(args.seconds)
    for (name, n), row in results.items():
        lines.append(
            f"| {name} | {n} | {row['p50']:.2f} | {row['p99']:.2f} | {row['lookups']:,.0f} "
            f"| {row.get('errors', 0):.0f} |"
        )
    if args.feast:
        lines += ["", *feast_targets(results)]
    load = os.getloadavg()[0]
    lines += [
        "",
        f"1-minute load average at the end of the run: {load:.1f} (the run's own servers and "
        "clients count in it).",
    ]
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    if not args.no_write:
        write_section("Features", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
