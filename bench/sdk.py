"""SDK overhead: the Python SDK against raw httpx / the raw gRPC stub, same routes, same run.

    .venv/bin/python bench/sdk.py [--requests 2000] [--no-write]

Starts a real ``mlp server`` subprocess (SQLite, scheduler off, serving plane on), uploads a
small sklearn model through the SDK, deploys it, then times from this process:

* ``GET /v1/jobs/training/{id}``: ``httpx.Client.get`` + ``.json()`` against
  ``Client.jobs.get`` (request building, retry loop, error mapping, parsing into the tolerant
  model), and the same with ``httpx.AsyncClient`` against ``AsyncClient``;
* ``Predict`` (4 features): the generated ``ModelServingStub`` against ``Client.predict``.

Raw and SDK calls alternate in blocks of 10, so both sides see the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, percentile, start_platform_server, write_section
from ml_platform import AsyncClient, Client
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.store.db import Database

BLOCK = 10
WARMUP = 50
FEATURES = {"f0": 0.1, "f1": -0.4, "f2": 1.2, "f3": 0.05}
SPEC = {
    "name": "bench-sdk",
    "framework": "sklearn",
    "docker_image": "python:3.11",
    "data_path": "data/train.csv",
    "output_path": "models/bench",
}


def model_file(directory: Path) -> Path:
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 4)), columns=list(FEATURES))
    model = LogisticRegression().fit(frame, (frame["f0"] + frame["f1"] > 0).astype(int))
    path = directory / "model.joblib"
    joblib.dump(model, path)
    return path


def alternate(raw: Callable[[], Any], sdk: Callable[[], Any], count: int) -> dict[str, list[float]]:
    """ms per call of each side, in alternating blocks."""
    for _ in range(WARMUP):
        raw()
        sdk()
    samples: dict[str, list[float]] = {"raw": [], "sdk": []}
    while len(samples["sdk"]) < count:
        for side, call in (("raw", raw), ("sdk", sdk)):
            for _ in range(BLOCK):
                started = time.perf_counter()
                call()
                samples[side].append((time.perf_counter() - started) * 1000)
    return samples


async def alternate_async(
    raw: Callable[[], Awaitable[Any]], sdk: Callable[[], Awaitable[Any]], count: int
) -> dict[str, list[float]]:
    for _ in range(WARMUP):
        await raw()
        await sdk()
    samples: dict[str, list[float]] = {"raw": [], "sdk": []}
    while len(samples["sdk"]) < count:
        for side, call in (("raw", raw), ("sdk", sdk)):
            for _ in range(BLOCK):
                started = time.perf_counter()
                await call()
                samples[side].append((time.perf_counter() - started) * 1000)
    return samples


def bench_rest(base: str, key: str, job_id: str, count: int) -> dict[str, list[float]]:
    path = f"/v1/jobs/training/{job_id}"
    with (
        httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as raw_client,
        Client(base_url=base, api_key=key) as sdk,
    ):

        def raw() -> Any:
            response = raw_client.get(path)
            response.raise_for_status()
            return response.json()

        return alternate(raw, lambda: sdk.jobs.get(job_id), count)


async def bench_rest_async(base: str, key: str, job_id: str, count: int) -> dict[str, list[float]]:
    path = f"/v1/jobs/training/{job_id}"
    async with (
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=30) as raw_client,
        AsyncClient(base_url=base, api_key=key) as sdk,
    ):

        async def raw() -> Any:
            response = await raw_client.get(path)
            response.raise_for_status()
            return response.json()

        return await alternate_async(raw, lambda: sdk.jobs.get(job_id), count)


def bench_predict(sdk: Client, key: str, name: str, count: int) -> dict[str, list[float]]:
    import grpc

    from ml_platform.serving.proto import serving_pb2, serving_pb2_grpc

    metadata = (("x-api-key", key),)
    with grpc.insecure_channel(sdk.grpc_target) as channel:
        stub = serving_pb2_grpc.ModelServingStub(channel)

        def raw() -> Any:
            request = serving_pb2.PredictRequest(
                model_id=name,
                features=[serving_pb2.Feature(name=k, float_value=v) for k, v in FEATURES.items()],
            )
            reply = stub.Predict(request, metadata=metadata, timeout=30)
            return list(reply.predictions)

        return alternate(raw, lambda: sdk.predict(name, FEATURES), count)


def row(label: str, samples: dict[str, list[float]]) -> str:
    raw, sdk = median(samples["raw"]), median(samples["sdk"])
    return (
        f"| {label} | {raw:.3f} | {sdk:.3f} | {sdk - raw:+.3f} | {sdk / raw:.2f} "
        f"| {percentile(samples['raw'], 99):.3f} | {percentile(samples['sdk'], 99):.3f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="timed calls per side")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'mlp.db'}"
        db = Database(url)
        db.upgrade()
        auth = AuthService(db, TokenCodec("unused"))
        auth.create_tenant("bench")
        key = auth.create_api_key("bench", "bench").plaintext
        db.dispose()
        proc, base, target = start_platform_server(
            data_dir,
            database_url=url,
            serving=True,
            env={"ML_PLATFORM_SCHEDULER_ENABLED": "false"},
        )
        assert target is not None
        grpc_target = target
        try:
            with Client(base_url=base, api_key=key, grpc_target=grpc_target) as sdk:
                job = sdk.train(**SPEC)
                sdk.models.upload("bench", model_file(data_dir))
                sdk.deploy("bench").wait_ready(timeout=120)
                rest = bench_rest(base, key, job.id, args.requests)
                rest_async = asyncio.run(bench_rest_async(base, key, job.id, args.requests))
                predict = bench_predict(sdk, key, "bench", args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    table = "\n".join(
        [
            "| call | raw p50 ms | SDK p50 ms | SDK added p50 ms | SDK / raw | raw p99 ms "
            "| SDK p99 ms |",
            "|---|---|---|---|---|---|---|",
            row("GET /v1/jobs/training/{id}: httpx.Client vs Client.jobs.get", rest),
            row(
                "GET /v1/jobs/training/{id}: httpx.AsyncClient vs AsyncClient.jobs.get", rest_async
            ),
            row("Predict, 4 features: ModelServingStub vs Client.predict", predict),
        ]
    )
    print(table)
    body = (
        f"Command: `.venv/bin/python bench/sdk.py --requests {args.requests}` (`make bench`). "
        "One `mlp server` subprocess (SQLite, scheduler off, serving plane on with a 4-feature "
        "LogisticRegression) and this client process share the machine; each side makes "
        f"{args.requests} calls over loopback after {WARMUP} warm-up calls, raw and SDK "
        f"alternating in blocks of {BLOCK}. The raw REST side is `get()` + `raise_for_status()` "
        "+ `.json()`; the SDK side adds its retry loop, headers (User-Agent, X-Retry-Count), "
        "error mapping and parsing into the tolerant model. The raw gRPC side builds the "
        "`PredictRequest` and calls the generated stub on one channel; the SDK side builds the "
        "same request from a dict and parses the reply into `Prediction`.\n"
        f"Load average (1/5/15 min) at the end of the run: {load}.\n"
        "Target (issue 8): SDK added p50 under 0.2 ms per REST call.\n\n" + table
    )
    if not args.no_write:
        write_section("SDK", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
