"""Job runtime benchmark (issue 3): scheduling latency and throughput, live log delivery.

Starts a real ``mlp server`` subprocess (SQLite, local executor) per scenario:

1. submit-to-running latency: jobs submitted one at a time over REST; latency is the
   server's ``started_at - created_at`` (the moment the scheduler's compare-and-set made the
   job ``running``, the subprocess is spawned right after).
2. throughput: 200 jobs queued while the scheduler is off (``ML_PLATFORM_SCHEDULER_ENABLED=false``),
   then a server with the scheduler on starts them; jobs started per second from the first
   to the last ``started_at``.
3. log delivery: one job prints a line carrying its own ``time.time()`` every 20 ms;
   N concurrent SSE followers (``follow=true``) record ``receive time - print time`` per line.

    .venv/bin/python bench/jobs.py [--latency-jobs 50] [--queued 200] [--followers 200]
                                   [--no-write]

Writes the ``## Jobs`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, percentile, start_platform_server, stop_server, write_section

JOB_ENV = {
    "ML_PLATFORM_NODE_CPU_CORES": "1000",
    "ML_PLATFORM_NODE_MEMORY_GB": "1000",
    "ML_PLATFORM_TENANT_MAX_CONCURRENT_JOBS": "1000",
    "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.5",
    "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "2",
    "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",  # the clients poll a job every 10 ms
}


def api_key(data_dir: Path) -> str:
    credentials = json.loads((data_dir / "config" / "credentials.json").read_text())
    key: str = credentials["api_key"]
    return key


def body(entrypoint: str, name: str = "bench") -> dict[str, Any]:
    return {
        "name": name,
        "framework": "sklearn",
        "docker_image": "python:3.11",
        "entrypoint": entrypoint,
        "data_path": "data.csv",
        "output_path": "out",
        "compute": {"cpu_cores": 1, "memory_gb": 1},
    }


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def wait_status(client: httpx.Client, job_id: str, statuses: set[str]) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/training/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.01)


def bench_latency(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, base, _ = start_platform_server(data_dir, env={**JOB_ENV})
        try:
            client = httpx.Client(base_url=base, headers={"X-API-Key": api_key(data_dir)})
            latencies = []
            for i in range(n + 3):
                job = client.post("/v1/jobs/training", json=body("true")).json()
                done = wait_status(client, job["id"], {"succeeded", "failed"})
                if i >= 3:  # warm-up
                    latencies.append((parse(done["started_at"]) - parse(done["created_at"])) * 1000)
            return latencies
        finally:
            stop_server(proc)


def bench_throughput(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, base, _ = start_platform_server(
            data_dir, env={**JOB_ENV, "ML_PLATFORM_SCHEDULER_ENABLED": "false"}
        )
        key = api_key(data_dir)
        try:
            client = httpx.Client(base_url=base, headers={"X-API-Key": key})
            ids = [
                client.post("/v1/jobs/training", json=body("true")).json()["id"] for _ in range(n)
            ]
        finally:
            stop_server(proc)
        began = time.time()
        proc, base, _ = start_platform_server(data_dir, env={**JOB_ENV})
        try:
            client = httpx.Client(base_url=base, headers={"X-API-Key": key})
            starts = []
            for job_id in ids:
                job = wait_status(client, job_id, {"running", "succeeded", "failed"})
                starts.append(parse(job["started_at"]))
            span = max(starts) - min(starts)
            return (n - 1) / span if span > 0 else float("inf"), max(starts) - began
        finally:
            stop_server(proc)


def start_ray_head(temp_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Ray head of this run's own (``--block``, stopped by its pid, so other Ray clusters
    on the machine are left alone); its dashboard address."""
    ray = Path(sys.executable).parent / "ray"
    dashboard = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--include-dashboard", "true", "--disable-usage-stats", "--temp-dir", str(temp_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and head.poll() is None:
        try:
            if httpx.get(f"{address}/api/version", timeout=2).status_code == 200:
                return head, address
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    head.terminate()
    raise RuntimeError("the Ray head did not answer within 180 s")


def bench_ray(n: int) -> tuple[list[float], list[float], list[float]]:
    """The same one-line job ``n`` times straight to Ray's Job Submission API and ``n`` times
    through the platform's Ray executor: Ray's own submit-to-end (its ``end_time -
    start_time``), the platform's submit-to-succeeded (``completed_at - created_at``) and the
    platform's lag behind Ray's end for its own submission (``completed_at - end_time``)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    entrypoint = 'python -c "print(1)"'
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        head, address = start_ray_head(Path("/tmp") / f"ray-bench-{os.getpid()}")
        try:
            ray = JobSubmissionClient(address)
            deadline = time.monotonic() + 120
            while True:  # the dashboard answers before its job agent is ready
                try:
                    ray.submit_job(entrypoint=entrypoint)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            own: list[float] = []
            for i in range(n + 1):
                submission = ray.submit_job(entrypoint=entrypoint)
                while ray.get_job_status(submission) not in {
                    JobStatus.SUCCEEDED,
                    JobStatus.FAILED,
                }:
                    time.sleep(0.01)
                info = ray.get_job_info(submission)
                if i:  # the first one warms the head up
                    own.append(float(info.end_time - info.start_time))
            env = {**JOB_ENV, "ML_PLATFORM_EXECUTOR": "ray", "ML_PLATFORM_RAY_ADDRESS": address}
            proc, base, _ = start_platform_server(data_dir, env=env)
            try:
                client = httpx.Client(base_url=base, headers={"X-API-Key": api_key(data_dir)})
                ours: list[float] = []
                lag: list[float] = []
                for i in range(n + 1):
                    job = client.post("/v1/jobs/training", json=body(entrypoint)).json()
                    done = wait_status(client, job["id"], {"succeeded", "failed", "cancelled"})
                    if done["status"] != "succeeded":
                        raise RuntimeError(f"Ray job {job['id']}: {done.get('error_message')}")
                    if i:
                        completed = parse(done["completed_at"])
                        ours.append((completed - parse(done["created_at"])) * 1000)
                        info = ray.get_job_info(job["id"])
                        lag.append(completed * 1000 - float(info.end_time))
                return own, ours, lag
            finally:
                stop_server(proc)
        finally:
            head.terminate()
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait()


EMITTER = """\
import os, sys, time
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.01)
for i in range(int(sys.argv[2])):
    print(f"{time.time():.6f} line {i}", flush=True)
    time.sleep(0.02)
"""


def package(script: str) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("emit.py", script)
    return buffer.getvalue()


class Delivery:
    """What the followers saw: per line and follower, receive - print (``total``), split into
    print -> stored (the line's server ``timestamp``, taken when the executor stored it) and
    stored -> received (fan-out, SSE encoding and writes, the network and the client)."""

    def __init__(self) -> None:
        self.total: list[float] = []
        self.stored: list[float] = []
        self.sent: list[float] = []
        self.server_cpu = 0.0
        """CPU seconds the server process spent while the lines were delivered."""
        self.client_cpu = 0.0
        """The same for this (the followers') process."""

    def record(self, received: float, data: dict[str, Any]) -> None:
        printed = float(data["line"].split(" ", 1)[0])
        stored = parse(data["timestamp"])
        self.total.append((received - printed) * 1000)
        self.stored.append((stored - printed) * 1000)
        self.sent.append((received - stored) * 1000)


async def follow_httpx(
    base: str, key: str, job_id: str, out: Delivery, connected: asyncio.Event
) -> None:
    """One follower through httpx (``aiter_lines``): costly per line on the client side."""
    async with (
        httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=None) as c,
        c.stream(
            "GET", f"/v1/jobs/training/{job_id}/logs", params={"follow": "true", "tail": "0"}
        ) as response,
    ):
        connected.set()
        async for line in response.aiter_lines():
            if line.startswith("event: end"):
                return
            if not line.startswith("data: "):
                continue
            received = time.time()
            data = json.loads(line[6:])
            if data.get("stream") == "stdout":
                out.record(received, data)


async def follow_raw(
    base: str, key: str, job_id: str, out: Delivery, connected: asyncio.Event
) -> None:
    """One follower on a bare asyncio socket: HTTP/1.1 chunked framing and SSE lines split by
    hand, one ``json.loads`` per ``data`` line; the receive time is taken once per chunk."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET /v1/jobs/training/{job_id}/logs?follow=true&tail=0 HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nX-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(f"unexpected SSE response: {head[:200]!r}")
        connected.set()
        pending = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                raise RuntimeError("the SSE stream ended without an end event")
            chunk = await reader.readexactly(size + 2)
            received = time.time()
            *complete, pending = (pending + chunk[:-2]).split(b"\n")
            for raw in complete:
                if raw.startswith(b"data: "):
                    data = json.loads(raw[6:])
                    if data.get("stream") == "stdout":
                        out.record(received, data)
                elif raw.startswith(b"event: end"):
                    return
    finally:
        writer.close()


FOLLOWERS = {"raw": follow_raw, "httpx": follow_httpx}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_followers(followers: int, lines: int, client: str) -> Delivery:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, base, _ = start_platform_server(
            data_dir, env={**JOB_ENV, "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2"}
        )
        try:
            key = api_key(data_dir)
            async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as api:
                # The emitter waits for a gate file until every follower is connected.
                gate_file = f"/tmp/mlp-bench-gate-{secrets.token_hex(4)}"
                uploaded = await api.post(
                    "/v1/code-packages",
                    content=package(EMITTER),
                    headers={"Content-Type": "application/zip"},
                )
                spec = body(f"python emit.py {gate_file} {lines}")
                spec["source"] = uploaded.json()["id"]
                job = (await api.post("/v1/jobs/training", json=spec)).json()
                delivery = Delivery()
                connected = [asyncio.Event() for _ in range(followers)]
                follow = FOLLOWERS[client]
                tasks = [
                    asyncio.create_task(follow(base, key, job["id"], delivery, event))
                    for event in connected
                ]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected)), 120)
                cpu_before, client_before = cpu_seconds(proc.pid), time.process_time()
                Path(gate_file).touch()
                await asyncio.wait_for(asyncio.gather(*tasks), 600)
                delivery.server_cpu = cpu_seconds(proc.pid) - cpu_before
                delivery.client_cpu = time.process_time() - client_before
                Path(gate_file).unlink(missing_ok=True)
                return delivery
        finally:
            stop_server(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-jobs", type=int, default=50)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--ray-jobs", type=int, default=10, help="0 skips the Ray scenario")
    parser.add_argument(
        "--client",
        choices=sorted(FOLLOWERS),
        default="raw",
        help="the SSE followers' client: bare asyncio sockets (raw) or httpx",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rows = ["| measurement | p50 | p99 | other |", "|---|---|---|---|"]
    if args.latency_jobs:
        latencies = bench_latency(args.latency_jobs)
        rows.append(
            f"| submit-to-running, local executor ({len(latencies)} jobs, one at a time) | "
            f"{percentile(latencies, 50):.1f} ms | {percentile(latencies, 99):.1f} ms | |"
        )
    if args.queued:
        rate, drain = bench_throughput(args.queued)
        rows.append(
            f"| jobs started per second, {args.queued} queued | | | {rate:.1f} jobs/s "
            f"(all started {drain:.1f} s after the scheduler's server was launched) |"
        )
    if args.followers:
        delivery = asyncio.run(bench_followers(args.followers, args.lines, args.client))
        expected = args.followers * args.lines
        rows += [
            f"| log line delivery to {args.followers} SSE followers | "
            f"{percentile(delivery.total, 50):.1f} ms | {percentile(delivery.total, 99):.1f} ms | "
            f"{len(delivery.total):,} of {expected:,} line deliveries received; CPU per "
            f"delivery: server {delivery.server_cpu / max(len(delivery.total), 1) * 1e6:.0f} us, "
            f"{args.client} client {delivery.client_cpu / max(len(delivery.total), 1) * 1e6:.0f}"
            " us |",
            f"| of which print -> stored (the line's server timestamp) | "
            f"{percentile(delivery.stored, 50):.1f} ms | "
            f"{percentile(delivery.stored, 99):.1f} ms | |",
            f"| of which stored -> received by the follower | "
            f"{percentile(delivery.sent, 50):.1f} ms | {percentile(delivery.sent, 99):.1f} ms | |",
        ]
    if args.ray_jobs:
        own, ours, lag = bench_ray(args.ray_jobs)
        rows += [
            f"| Ray's own submit-to-end, straight to Ray's Job Submission API ({len(own)} jobs) | "
            f"{percentile(own, 50):.0f} ms | {percentile(own, 99):.0f} ms | |",
            f"| submit-to-succeeded, Ray executor ({len(ours)} jobs, one at a time) | "
            f"{percentile(ours, 50):.0f} ms | {percentile(ours, 99):.0f} ms | "
            f"{percentile(ours, 50) / percentile(own, 50):.2f}x Ray's own p50 |",
            f"| Ray executor: succeeded after Ray's own end time | "
            f"{percentile(lag, 50):.0f} ms | {percentile(lag, 99):.0f} ms | |",
        ]

    text = (
        f"Command: `.venv/bin/python bench/jobs.py --latency-jobs {args.latency_jobs} "
        f"--queued {args.queued} --followers {args.followers} --lines {args.lines} "
        f"--ray-jobs {args.ray_jobs} --client {args.client}` "
        "(`make bench`). Each scenario starts its own `mlp server` (SQLite, local executor, "
        "scheduler interval 0.5 s, woken on submit); the clients share the machine. "
        "Submit-to-running is the server's `started_at - created_at`; jobs run `true`. "
        "Log delivery: one job prints a timestamped line every 20 ms; latency is receive time "
        "minus print time, across every follower and line, split at the line's server "
        "timestamp (stored). The followers share one Python process on the same 2 cores: "
        "bare asyncio sockets by default (`--client raw`: chunked framing split by hand, one "
        "`json.loads` per line), or httpx (`--client httpx`, the earlier client, about twice "
        "the client CPU per line); CPU per delivery is each process's CPU time over "
        "the deliveries, steadier than the latencies on a loaded machine. "
        "Ray (`--ray-jobs`): a Ray head of "
        "the run's own (2 CPUs) runs `python -c \"print(1)\"`, first straight through Ray's "
        "Job Submission API, then through a server with the Ray executor; the first job of "
        "each is a warm-up.\n"
        "Targets (issue 3): submit-to-running p50 under 100 ms; log lines reach 200 followers "
        "within 250 ms p99; (issue 15) Ray executor submit-to-succeeded <= 1.2x Ray's own.\n\n"
        + "\n".join(rows)
    )
    print(text)
    if not args.no_write:
        write_section("Jobs", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
