"""Governance benchmark: what rate limiting (memory, Redis), audit, metrics and usage counting
add to each REST request, measured side by side with each of them off, in one run.

    .venv/bin/python bench/governance.py [--requests 3000] [--rounds 10] [--no-write]

One live uvicorn per configuration (this file with ``--serve``: ``create_app`` on SQLite, with
the governance middleware of the configuration removed), all on loopback at once; requests
go to each configuration in turn, one at a time (``--requests`` per configuration and
endpoint, sequential on one keep-alive connection each), so every configuration meets the same
machine load. Two endpoints: ``GET /v1/me`` (an authenticated read: rate limit, metrics, usage) and
``DELETE /v1/jobs/training/<missing>`` (a mutation answered 404: one audit row as well).
Redis is the one on 127.0.0.1:6379 (``ML_PLATFORM_BENCH_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, median, percentile, stop_server, write_section

REDIS_URL = os.environ.get("ML_PLATFORM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
JWT_SECRET = "bench-" + "k" * 40
BUDGET = "600/minute"  # the default per-tenant control budget (Settings.rate_limit_control)
TENANTS = 40  # requests rotate over this many tenants, so none reaches BUDGET: we measure the
# bookkeeping, not rejections (a moving window's cost grows with the hits it holds)


@dataclass(frozen=True)
class Config:
    name: str
    ratelimit: str | None = None  # None, "memory", "redis"
    audit: bool = False
    audit_delivery: str = "committed"  # or "buffered": the response does not wait
    metrics: bool = False
    usage: bool = False


CONFIGS = [
    Config("all off"),
    Config("all off (a second copy: the noise floor)"),
    Config("rate limit (memory)", ratelimit="memory"),
    Config("rate limit (Redis)", ratelimit="redis"),
    Config("audit", audit=True),
    Config("audit (buffered delivery)", audit=True, audit_delivery="buffered"),
    Config("metrics", metrics=True),
    Config("usage counting", usage=True),
    Config("all on (memory)", ratelimit="memory", audit=True, metrics=True, usage=True),
    Config("all on (Redis)", ratelimit="redis", audit=True, metrics=True, usage=True),
    Config(
        "all on (Redis), audit buffered",
        ratelimit="redis",
        audit=True,
        audit_delivery="buffered",
        metrics=True,
        usage=True,
    ),
]
ENDPOINTS = [("GET", "/v1/me"), ("DELETE", "/v1/jobs/training/job_missing")]
MECHANISMS = (
    "How each is paid for: the rate limiter counts every budget of a request in one step, in "
    "memory under a lock (no timer thread) or as one Lua script (EVALSHA) pipelined on the "
    "request's own event loop's one Redis connection (`store/redis_wire.py`, hiredis "
    "parsing, no thread hop); metrics and "
    "usage counting are in-memory increments; audit hands its event to one writer thread "
    "that commits concurrent requests' events together through Core; with the default "
    "`committed` delivery the response starts only after that commit (the event exists when "
    "the client sees the answer), with `buffered` it does not wait."
)


def _reading(servers: list[Running]) -> str:
    """Met or not, from this run's medians: all on (Redis) minus all off, per endpoint, with
    each audit delivery."""
    by_name = {s.config.name: s for s in servers}
    base, noise = by_name["all off"], servers[1]
    verdicts = []
    for name in ("all on (Redis)", "all on (Redis), audit buffered"):
        full = by_name[name]
        cells = []
        met = True
        for method, path in ENDPOINTS:
            label = f"{method} {path}"
            added = median(full.samples[label]) - median(base.samples[label])
            floor = abs(median(noise.samples[label]) - median(base.samples[label]))
            met = met and added < 0.3
            cells.append(f"{label}: {added:+.3f} ms (noise floor ±{floor:.3f} ms)")
        verdict = "met" if met else "**not met**"
        verdicts.append(f"*{name}*: {verdict} ({'; '.join(cells)})")
    return (
        "Reading: target under 0.3 ms p50 added in total with Redis on loopback, on this run: "
        + "; ".join(verdicts)
        + ". "
        + MECHANISMS
    )


# -- the server side (one process per configuration) ------------------------------------------


def serve(config: Config, data_dir: Path, port: int) -> None:
    import logging

    import uvicorn

    from ml_platform.api.audit import AuditMiddleware
    from ml_platform.api.metrics import MetricsMiddleware
    from ml_platform.api.ratelimit import RateLimitHeadersMiddleware
    from ml_platform.api.usage import UsageMiddleware
    from ml_platform.config import Settings
    from ml_platform.server.app import create_app
    from ml_platform.server.context import build_context

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        data_dir=data_dir,
        config_dir=data_dir / "config",
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        port=port,
        scheduler_enabled=False,
        rate_limit_enabled=config.ratelimit is not None,
        rate_limit_control=BUDGET,
        redis_url=REDIS_URL if config.ratelimit == "redis" else None,
        rate_limit_key_prefix=f"mlp-bench-{os.getpid()}",
        access_log=False,
        audit_delivery=config.audit_delivery,
    )
    context = build_context(settings)
    app = create_app(settings, context)
    removed: set[type] = set()
    if config.ratelimit is None:
        removed.add(RateLimitHeadersMiddleware)
        app.state.rate_limiter = None
    if not config.audit:
        removed.add(AuditMiddleware)
    if not config.metrics:
        removed.add(MetricsMiddleware)
    if not config.usage:
        removed.add(UsageMiddleware)
    app.user_middleware = [m for m in app.user_middleware if m.cls not in removed]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the client side --------------------------------------------------------------------------


@dataclass
class Running:
    config: Config
    proc: subprocess.Popen[bytes]
    base: str
    samples: dict[str, list[float]] = field(default_factory=dict)


def _prepare(data_dir: Path) -> list[str]:
    """Migrate the store and make the bench tenants; their API keys."""
    from ml_platform.auth.service import AuthService
    from ml_platform.auth.tokens import TokenCodec
    from ml_platform.store.db import Database

    data_dir.mkdir(parents=True)
    db = Database(f"sqlite:///{data_dir / 'mlp.db'}")
    db.upgrade()
    auth = AuthService(db, TokenCodec(JWT_SECRET))
    keys = []
    for index in range(TENANTS):
        auth.create_tenant(f"bench-{index}")
        keys.append(auth.create_api_key(f"bench-{index}", "bench").plaintext)
    db.dispose()
    return keys


def _start(config: Config, data_dir: Path) -> Running:
    port = free_port()
    code = json.dumps(config.__dict__)
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            code,
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "server.log").open("wb"),
        env={**os.environ, "ML_PLATFORM_CONFIG_DIR": str(data_dir / "config")},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return Running(config, proc, base)
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the {config.name} server did not start:\n{log}")


def _drive(servers: list[Running], keys: dict[str, list[str]], requests: int, rounds: int) -> None:
    # a long timeout: a loaded machine can stall a request for seconds (it shows in p99)
    clients = {s.config.name: httpx.Client(base_url=s.base, timeout=60) for s in servers}
    sent = 0

    def call(s: Running, method: str, path: str) -> httpx.Response:
        nonlocal sent
        sent += 1
        mine = keys[s.config.name]
        return clients[s.config.name].request(
            method, path, headers={"X-API-Key": mine[sent % len(mine)]}
        )

    per_round = max(1, requests // rounds)
    try:
        for s in servers:  # warm-up: connections, caches, first audit rows
            for method, path in ENDPOINTS:
                for _ in range(50):
                    call(s, method, path)
        for _ in range(rounds):
            for method, path in ENDPOINTS:
                label = f"{method} {path}"
                for _ in range(per_round):
                    # one request per configuration in turn: every configuration meets the
                    # same moment's machine load
                    for s in servers:
                        started = time.perf_counter()
                        response = call(s, method, path)
                        s.samples.setdefault(label, []).append(
                            (time.perf_counter() - started) * 1000
                        )
                        if response.status_code not in (200, 404):
                            raise RuntimeError(
                                f"{s.config.name}: {method} {path} -> {response.status_code}"
                            )
    finally:
        for client in clients.values():
            client.close()


def _components(data_dir: Path, n: int = 2000) -> str:
    """Each component's own cost per request, in process (no HTTP, no scheduling noise)."""
    from ml_platform.api.metrics import ControlPlaneMetrics
    from ml_platform.config import Settings
    from ml_platform.governance.ratelimit import Plane, RateLimiter, build_rate_limiter
    from ml_platform.governance.usage import UsageRecorder
    from ml_platform.store.audit import AuditEvent, AuditStore
    from ml_platform.store.audit_writer import AuditWriter
    from ml_platform.store.base import utcnow
    from ml_platform.store.db import Database
    from ml_platform.store.usage import UsageStore

    data_dir.mkdir(parents=True)
    db = Database(f"sqlite:///{data_dir / 'mlp.db'}")
    db.upgrade()
    memory = build_rate_limiter(Settings(rate_limit_enabled=True, rate_limit_control=BUDGET))
    shared = build_rate_limiter(
        Settings(
            rate_limit_enabled=True,
            rate_limit_control=BUDGET,
            redis_url=REDIS_URL,
            rate_limit_key_prefix=f"mlp-bench-c-{os.getpid()}",
        )
    )
    metrics = ControlPlaneMetrics(db)
    recorder = UsageRecorder(UsageStore(db))
    audit = AuditStore(db)

    def event() -> AuditEvent:
        return AuditEvent(
            utcnow(),
            "ten_x",
            "bench",
            "mlp_00000000",
            "jobs.cancel",
            "job_x",
            "DELETE",
            "/v1/jobs/training/{job_id}",
            404,
            "req_x",
            "127.0.0.1",
        )

    async def limiter_times(limiter: RateLimiter) -> list[float]:
        times = []
        for i in range(n):
            started = time.perf_counter()
            await limiter.hit(Plane.CONTROL, f"ten_{i % TENANTS}", f"api_key:k{i % TENANTS}")
            times.append((time.perf_counter() - started) * 1e6)
        await limiter.aclose()
        return times

    async def handover_times(writer: AuditWriter) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await writer.write(event())
            times.append((time.perf_counter() - started) * 1e6)
        await writer.drain()
        return times

    steps = {
        "audit event write (SQLite, in the caller's thread)": lambda i: audit.record(event()),
        "metrics (counter + histogram)": lambda i: metrics.observe_request(
            "GET", "/v1/me", 200, "v1", 0.001
        ),
        "usage count (in memory)": lambda i: recorder.count(
            f"ten_{i % TENANTS}", "v1", "GET", "/v1/me"
        ),
    }
    measured = {
        "rate limit hit (memory)": asyncio.run(limiter_times(memory)),
        "rate limit hit (Redis, loopback)": asyncio.run(limiter_times(shared)),
        "audit event, committed delivery (writer thread, SQLite)": asyncio.run(
            handover_times(AuditWriter(audit))
        ),
        "audit event, buffered delivery (hand-over only)": asyncio.run(
            handover_times(AuditWriter(audit, wait_for_commit=False))
        ),
    }
    for name, step in steps.items():
        times = []
        for i in range(n):
            started = time.perf_counter()
            step(i)
            times.append((time.perf_counter() - started) * 1e6)
        measured[name] = times
    lines = ["| component | median µs | p99 µs |", "|---|---:|---:|"]
    for name, times in measured.items():
        lines.append(f"| {name} | {median(times):.1f} | {percentile(times, 99):.1f} |")
    db.dispose()
    return "\n".join(lines)


def _table(servers: list[Running]) -> str:
    base = {label: median(v) for label, v in servers[0].samples.items()}
    lines = [
        "| configuration | GET /v1/me p50 ms | added p50 ms | ratio | p99 ms "
        "| DELETE (audited 404) p50 ms | added p50 ms | ratio | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in servers:
        cells = [s.config.name]
        for method, path in ENDPOINTS:
            values = s.samples[f"{method} {path}"]
            p50 = median(values)
            reference = base[f"{method} {path}"]
            cells += [
                f"{p50:.3f}",
                f"{p50 - reference:+.3f}",
                f"{p50 / reference:.2f}",
                f"{percentile(values, 99):.3f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Config(**json.loads(args.serve)), args.data_dir, args.port)
        return
    import redis

    redis.Redis.from_url(REDIS_URL).ping()  # fail early: the Redis rows need it
    with tempfile.TemporaryDirectory(prefix="mlp-bench-gov-") as tmp:
        keys: dict[str, list[str]] = {}
        servers: list[Running] = []
        try:
            for index, config in enumerate(CONFIGS):
                data_dir = Path(tmp) / f"c{index}"
                keys[config.name] = _prepare(data_dir)
                servers.append(_start(config, data_dir))
            _drive(servers, keys, args.requests, args.rounds)
        finally:
            for s in servers:
                stop_server(s.proc)
        components = _components(Path(tmp) / "components")
    table = _table(servers)
    total = args.requests * len(ENDPOINTS)
    body = (
        f"`.venv/bin/python bench/governance.py --requests {args.requests} --rounds "
        f"{args.rounds}`: one uvicorn per configuration on loopback (SQLite store, Redis on "
        f"127.0.0.1:6379), {total} sequential keep-alive requests each, one configuration after the "
        f"other request by request, rotating over {TENANTS} tenants (budget {BUDGET} each, "
        "never reached). *added* is the median minus the median with all of them off; "
        "the audited DELETE answers 404 and writes one audit row (audit only records "
        "mutations and 401s, so GET rows show its pass-through cost). The second *all off* "
        "row is the same configuration again: its difference to the first is the noise "
        "floor of the run.\n\n" + table + "\n\n"
        "Each component alone, in this process (what it adds to a request without HTTP "
        f"and scheduling noise; {TENANTS} tenants rotating, 2000 calls each):\n\n"
        + components
        + "\n\n"
        + _reading(servers)
        + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("Governance", body)


if __name__ == "__main__":
    main()
