"""Governance benchmark: what rate limiting (memory, Redis), audit, metrics and usage counting
add to each REST request, measured side by side with each of them off, in one run.

    .venv/bin/python bench/governance.py [--requests 3000] [--rounds 10] [--no-write]

One live uvicorn per configuration (this file with ``--serve``: ``create_app`` on SQLite, with
the governance middleware of the configuration removed), all on loopback at once; requests
are sent round-robin in rounds (``--requests`` per configuration and endpoint in total,
sequential on one keep-alive connection) so machine load drifts over every configuration
alike. Two endpoints: ``GET /v1/me`` (an authenticated read: rate limit, metrics, usage) and
``DELETE /v1/jobs/training/<missing>`` (a mutation answered 404: one audit row as well).
Redis is the one on 127.0.0.1:6379 (``ML_PLATFORM_BENCH_REDIS_URL``).
"""

from __future__ import annotations

import argparse
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
BUDGET = "100000000/minute"  # never reached: we measure the bookkeeping, not rejections


@dataclass(frozen=True)
class Config:
    name: str
    ratelimit: str | None = None  # None, "memory", "redis"
    audit: bool = False
    metrics: bool = False
    usage: bool = False


CONFIGS = [
    Config("all off"),
    Config("rate limit (memory)", ratelimit="memory"),
    Config("rate limit (Redis)", ratelimit="redis"),
    Config("audit", audit=True),
    Config("metrics", metrics=True),
    Config("usage counting", usage=True),
    Config("all on (memory)", ratelimit="memory", audit=True, metrics=True, usage=True),
    Config("all on (Redis)", ratelimit="redis", audit=True, metrics=True, usage=True),
]
ENDPOINTS = [("GET", "/v1/me"), ("DELETE", "/v1/jobs/training/job_missing")]


# -- the server side (one process per configuration) ------------------------------------------


def serve(config: Config, data_dir: Path, port: int) -> None:
    import logging

    import uvicorn

    from ml_platform.api.audit import AuditMiddleware
    from ml_platform.api.metrics import MetricsMiddleware
    from ml_platform.api.ratelimit import RateLimitHeadersMiddleware
    from ml_platform.api.usage import UsageMiddleware
    from ml_platform.config import Settings
    from ml_platform.server.app import build_context, create_app

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


def _prepare(data_dir: Path) -> str:
    """Migrate the store and make the bench tenant; its API key."""
    from ml_platform.auth.service import AuthService
    from ml_platform.auth.tokens import TokenCodec
    from ml_platform.store.db import Database

    data_dir.mkdir(parents=True)
    db = Database(f"sqlite:///{data_dir / 'mlp.db'}")
    db.upgrade()
    auth = AuthService(db, TokenCodec(JWT_SECRET))
    auth.create_tenant("bench")
    key = auth.create_api_key("bench", "bench").plaintext
    db.dispose()
    return key


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


def _drive(servers: list[Running], key: dict[str, str], requests: int, rounds: int) -> None:
    clients = {
        s.config.name: httpx.Client(base_url=s.base, headers={"X-API-Key": key[s.config.name]})
        for s in servers
    }
    per_round = max(1, requests // rounds)
    try:
        for s in servers:  # warm-up: connections, caches, first audit rows
            for method, path in ENDPOINTS:
                for _ in range(50):
                    clients[s.config.name].request(method, path)
        for _ in range(rounds):
            for s in servers:
                client = clients[s.config.name]
                for method, path in ENDPOINTS:
                    label = f"{method} {path}"
                    bucket = s.samples.setdefault(label, [])
                    for _ in range(per_round):
                        started = time.perf_counter()
                        response = client.request(method, path)
                        bucket.append((time.perf_counter() - started) * 1000)
                        if response.status_code not in (200, 404):
                            raise RuntimeError(
                                f"{s.config.name}: {method} {path} -> {response.status_code}"
                            )
    finally:
        for client in clients.values():
            client.close()


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
        keys: dict[str, str] = {}
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
    table = _table(servers)
    total = args.requests * len(ENDPOINTS)
    body = (
        f"`.venv/bin/python bench/governance.py --requests {args.requests} --rounds "
        f"{args.rounds}`: one uvicorn per configuration on loopback (SQLite store, Redis on "
        f"127.0.0.1:6379), {total} sequential keep-alive requests each, sent round-robin in "
        f"{args.rounds} rounds. *added* is the median minus the median with all of them off; "
        "the audited DELETE answers 404 and writes one audit row (audit only records "
        "mutations and 401s, so GET rows show its pass-through cost).\n\n" + table + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("Governance", body)


if __name__ == "__main__":
    main()
