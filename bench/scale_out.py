"""Scale-out: two API replicas against one, and the object store against a local root.

Every scenario runs on the machine's PostgreSQL (a fresh schema) with ``moto_server`` on
loopback as the S3 storage (``ML_PLATFORM_STORAGE_URI=s3://...``), the machine's Redis
(live log fan-out) and the local executor:

- jobs started per second: ``--jobs`` jobs (``true``) submitted as fast as possible, spread
  over the replicas' APIs; one replica holds the scheduler lease; rate = (n - 1) / (last
  start - first start) from the jobs' ``started_at``;
- SSE delivery: ``--followers`` followers spread over the replicas follow one job that
  prints a timestamped line every 20 ms (``--lines`` lines); latency = receive - print time;
  followers on the replica that does not run the job read the lines from PostgreSQL,
  woken through Redis;
- object-store overhead: ``PUT /v1/data/...`` then ``GET`` of ``--size-mib`` MiB files,
  ``--transfers`` times each, through one replica whose storage is a local directory against
  one whose storage is the S3 server.

    .venv/bin/python bench/scale_out.py [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, percentile, start_platform_server, stop_server, write_section
from jobs import EMITTER, follow, package

PG_BASE = os.environ.get(
    "ML_PLATFORM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BUCKET = "mlp-bench"
ENV = {
    "ML_PLATFORM_NODE_CPU_CORES": "1000",
    "ML_PLATFORM_NODE_MEMORY_GB": "1000",
    "ML_PLATFORM_TENANT_MAX_CONCURRENT_JOBS": "1000",
    "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2",
    "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "3",
    "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",
    "ML_PLATFORM_REDIS_URL": os.environ.get("MLP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


@contextmanager
def postgres_schema() -> Iterator[str]:
    import psycopg

    schema = f"mlp_bench_{secrets.token_hex(4)}"
    raw = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def moto(workdir: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert executable, "moto[server] is a dev dependency"
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        httpx.put(f"{endpoint}/{BUCKET}", timeout=10).raise_for_status()
        yield {
            "key": "bench", "secret": "bench",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)


def storage_env(options: dict[str, Any], prefix: str) -> dict[str, str]:
    return {
        "ML_PLATFORM_STORAGE_URI": f"s3://{BUCKET}/{prefix}",
        "ML_PLATFORM_STORAGE_OPTIONS": json.dumps(options),
    }


@contextmanager
def replicas(
    count: int, database_url: str, extra: dict[str, str], workdir: Path
) -> Iterator[tuple[list[str], str]]:
    """``count`` ``mlp server --no-serving`` on one database: (base URLs, API key)."""
    secrets_key = Fernet.generate_key().decode()
    procs, bases = [], []
    try:
        for i in range(count):
            data_dir = workdir / f"replica-{i}-{secrets.token_hex(3)}"
            data_dir.mkdir()
            env = {**ENV, **extra, "ML_PLATFORM_SECRETS_KEY": secrets_key}
            proc, base, _ = start_platform_server(data_dir, database_url=database_url, env=env)
            procs.append(proc)
            bases.append(base)
            if i == 0:
                first = data_dir
        credentials = json.loads((first / "config" / "credentials.json").read_text())
        yield bases, str(credentials["api_key"])
    finally:
        for proc in procs:
            stop_server(proc)


def job_body(entrypoint: str, source: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "bench", "framework": "sklearn", "docker_image": "python:3.11",
        "entrypoint": entrypoint, "data_path": "data.csv", "output_path": "out",
        "compute": {"cpu_cores": 1, "memory_gb": 1},
    }  # fmt: skip
    if source:
        body["source"] = source
    return body


def jobs_per_second(bases: list[str], key: str, n: int) -> float:
    clients = [httpx.Client(base_url=b, headers={"X-API-Key": key}, timeout=60) for b in bases]
    ids = [
        clients[i % len(clients)].post("/v1/jobs/training", json=job_body("true")).json()["id"]
        for i in range(n)
    ]
    starts = []
    for i, job_id in enumerate(ids):
        client = clients[i % len(clients)]
        while True:
            job = client.get(f"/v1/jobs/training/{job_id}").json()
            if job["started_at"]:
                starts.append(datetime.fromisoformat(job["started_at"]).timestamp())
                break
            time.sleep(0.02)
    for client in clients:
        client.close()
    span = max(starts) - min(starts)
    return (n - 1) / span if span > 0 else float("inf")


async def sse_delivery(
    bases: list[str], key: str, followers: int, lines: int
) -> tuple[list[float], int]:
    async with httpx.AsyncClient(
        base_url=bases[0], headers={"X-API-Key": key}, timeout=60
    ) as client:
        gate = f"/tmp/mlp-bench-gate-{secrets.token_hex(4)}"
        uploaded = await client.post(
            "/v1/code-packages",
            content=package(EMITTER),
            headers={"Content-Type": "application/zip"},
        )
        spec = job_body(f"python emit.py {gate} {lines}", uploaded.json()["id"])
        job = (await client.post("/v1/jobs/training", json=spec)).json()
        latencies: list[float] = []
        ready = asyncio.Event()
        counter = [0]
        tasks = [
            asyncio.create_task(
                follow(bases[i % len(bases)], key, job["id"], latencies, ready, counter, followers)
            )
            for i in range(followers)
        ]
        await asyncio.wait_for(ready.wait(), 120)
        Path(gate).touch()
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        Path(gate).unlink(missing_ok=True)
        return latencies, followers


def transfers(base: str, key: str, size_mib: int, count: int) -> tuple[list[float], list[float]]:
    payload = os.urandom(size_mib * 1024 * 1024)
    puts, gets = [], []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120) as client:
        for i in range(count + 2):
            began = time.perf_counter()
            client.put(f"/v1/data/bench/f{i}.bin", content=payload).raise_for_status()
            put = time.perf_counter() - began
            began = time.perf_counter()
            response = client.get(f"/v1/data/bench/f{i}.bin")
            response.raise_for_status()
            get = time.perf_counter() - began
            assert len(response.content) == len(payload)
            if i >= 2:  # warm-up
                puts.append(put * 1000)
                gets.append(get * 1000)
    return puts, gets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=8)
    parser.add_argument("--transfers", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rows = ["| measurement | 1 replica | 2 replicas |", "|---|---|---|"]
    store_rows = [
        "| transfer | local root p50 ms | S3 (moto) p50 ms | overhead |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp, moto(Path(tmp)) as options:
        work = Path(tmp)
        results: dict[int, tuple[float, list[float], int]] = {}
        for count in (1, 2):
            with (
                postgres_schema() as url,
                replicas(count, url, storage_env(options, f"r{count}"), work) as (bases, key),
            ):
                rate = jobs_per_second(bases, key, args.jobs)
                delivery, followers = asyncio.run(
                    sse_delivery(bases, key, args.followers, args.lines)
                )
                results[count] = (rate, delivery, followers)
            print(
                f"{count} replica(s): {rate:.1f} jobs/s, SSE p99 {percentile(delivery, 99):.1f} ms"
            )
        one, two = results[1], results[2]
        rows.append(
            f"| jobs started per second ({args.jobs} submitted) | {one[0]:.1f} | {two[0]:.1f} |"
        )
        for label, pct in (("p50", 50), ("p99", 99)):
            rows.append(
                f"| SSE delivery {label}, {args.followers} followers | "
                f"{percentile(one[1], pct):.1f} ms | {percentile(two[1], pct):.1f} ms |"
            )
        rows.append(
            f"| line deliveries received | {len(one[1]):,} of {one[2] * args.lines:,} | "
            f"{len(two[1]):,} of {two[2] * args.lines:,} |"
        )
        timings = {}
        for name, extra in (("local", {}), ("s3", storage_env(options, "transfers"))):
            with postgres_schema() as url, replicas(1, url, extra, work) as (bases, key):
                timings[name] = transfers(bases[0], key, args.size_mib, args.transfers)
        for index, label in ((0, "upload (PUT /v1/data)"), (1, "download (GET /v1/data)")):
            local = percentile(timings["local"][index], 50)
            remote = percentile(timings["s3"][index], 50)
            store_rows.append(
                f"| {label}, {args.size_mib} MiB | {local:.1f} | {remote:.1f} | "
                f"{remote - local:+.1f} ms ({remote / local:.1f}x) |"
            )
    text = (
        f"Command: `.venv/bin/python bench/scale_out.py --jobs {args.jobs} --followers "
        f"{args.followers} --lines {args.lines} --size-mib {args.size_mib} --transfers "
        f"{args.transfers}`. PostgreSQL (this machine's, a fresh schema per scenario), "
        "`moto_server` on loopback as the S3 storage, local executor, `mlp server --no-serving` "
        "replicas on this machine (one holds the scheduler lease; jobs and followers are "
        "spread round-robin over the replicas' APIs). With two replicas half the followers "
        "read a job that the other replica runs: its lines come from PostgreSQL, woken through "
        "Redis pub/sub (the machine's Redis). Transfers: one replica, the same file uploaded then "
        "downloaded, after 2 warm-ups; moto keeps objects in memory, so the S3 column is the "
        "platform's S3 path (s3fs, temporary key, server-side copy) rather than a real "
        "network store.\n\n" + "\n".join(rows) + "\n\n" + "\n".join(store_rows)
    )
    print(text)
    if not args.no_write:
        write_section("Scale-out", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
