"""Online feature serving: gRPC ``FeatureServing.GetOnlineFeatures`` latency and throughput.

    .venv/bin/python bench/features.py [--seconds 5] [--no-write]

Starts a real ``mlp server`` subprocess (SQLite, serving plane on) twice: with the embedded
SQL online store and with Redis (127.0.0.1:6379, a key prefix of its own). Each run uploads
a 10-feature view over 1,000 entity keys, materializes it, then calls GetOnlineFeatures from
this process for ``--seconds`` per row, one call at a time (latency) and from 8 concurrent
callers (throughput), with 1 and 100 entity keys per call. ``lookups/s`` counts entity keys
(x 10 features each) answered per second.

Feast's feature server is not compared here (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import io
import random
import secrets
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, percentile, start_platform_server, stop_server, write_section
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.serving.proto import features_pb2, features_pb2_grpc
from ml_platform.store.db import Database

N_KEYS = 1_000
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


def run_store(store: str, seconds: float) -> dict[int, dict[str, float]]:
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
        if store == "redis":
            env |= {
                "ML_PLATFORM_REDIS_URL": "redis://127.0.0.1:6379/0",
                "ML_PLATFORM_FEATURE_REDIS_KEY_PREFIX": f"mlp-bench-{secrets.token_hex(4)}:",
            }
        proc, base, target = start_platform_server(
            data_dir, database_url=url, serving=True, env=env
        )
        try:
            assert target is not None
            prepare(base, key)
            return {n: measure(target, key, n, seconds) for n in (1, 100)}
        finally:
            stop_server(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = [
        f"GetOnlineFeatures over gRPC, {N_FEATURES} float features per key, {N_KEYS} keys "
        "materialized, one serving worker; latency from one caller, lookups/s (entity keys "
        f"answered per second) from {CONCURRENCY} concurrent callers.",
        "",
        "| online store | keys per call | p50 ms | p99 ms | lookups/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for store in ("sql", "redis"):
        for n, row in run_store(store, args.seconds).items():
            lines.append(
                f"| {store} | {n} | {row['p50']:.2f} | {row['p99']:.2f} | {row['lookups']:,.0f} |"
            )
    lines += [
        "",
        "Feast's feature server was not measured: the comparison the issue asks for is open "
        "(see the issue's closing note).",
    ]
    table = "\n".join(lines)
    sys.stdout.write(table + "\n")
    if not args.no_write:
        write_section("Features", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
