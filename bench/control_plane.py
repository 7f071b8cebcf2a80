"""Control-plane benchmark: job creates/s and list latency at 100k jobs, SQLite and PostgreSQL.

    .venv/bin/python bench/control_plane.py [--jobs 100000] [--backends sqlite,postgres]

Starts a real ``mlp server`` subprocess per backend, loads N jobs straight into the store,
then drives the REST API over loopback from this process.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, percentile, start_platform_server, stop_server, write_section
from ml_platform.auth.service import AuthService
from ml_platform.auth.tokens import TokenCodec
from ml_platform.core.ids import new_id
from ml_platform.store.base import utcnow
from ml_platform.store.db import Database
from ml_platform.store.jobs import JobRow, JobTagRow
from ml_platform.store.quotas import TenantQuotaRow

PG_BASE = os.environ.get(
    "ML_PLATFORM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FRAMEWORKS = ("pytorch", "tensorflow", "sklearn", "xgboost")
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
SPEC = {
    "name": "bench",
    "framework": "sklearn",
    "docker_image": "img",
    "data_path": "d",
    "output_path": "o",
}


def load_jobs(
    db: Database, tenant_id: str, count: int, statuses: tuple[str, ...] = STATUSES
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batch: list[dict[str, object]] = []
    tags: list[dict[str, object]] = []
    with db.transaction() as session:
        for i in range(count):
            job_id = new_id("job")
            created = base + timedelta(milliseconds=i * 10)
            framework = FRAMEWORKS[i % 4]
            tag_values = {"team": f"team-{i % 20}", "project": f"p-{i % 7}"}
            # tag rows carry the job's created_at since 0013 (absent when benching older code)
            tag_time = {"created_at": created} if hasattr(JobTagRow, "created_at") else {}
            batch.append(
                {
                    "id": job_id,
                    "tenant_id": tenant_id,
                    "name": f"job-{i}",
                    "framework": framework,
                    "status": statuses[i % len(statuses)],
                    "spec": {**SPEC, "framework": framework, "tags": tag_values},
                    "env_vars": {},
                    "created_by": "bench",
                    "created_at": created,
                    "updated_at": created,
                    "metrics": {},
                }
            )
            tags.extend(
                {"job_id": job_id, "key": k, "value": v, "tenant_id": tenant_id, **tag_time}
                for k, v in tag_values.items()
            )
            if len(batch) >= 5000:
                session.execute(insert(JobRow), batch)
                session.execute(insert(JobTagRow), tags)
                batch, tags = [], []
        if batch:
            session.execute(insert(JobRow), batch)
            session.execute(insert(JobTagRow), tags)
    # the steady state autovacuum / ANALYZE reach on a live server: statistics and visibility map
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


def timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> float:
    start = time.perf_counter()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code >= 400:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
    return elapsed


@contextmanager
def backend_store(backend: str) -> Iterator[tuple[Path, str]]:
    """A fresh data dir and database (a SQLite file, or a PostgreSQL schema dropped after)."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{data_dir / 'mlp.db'}"
        else:
            import psycopg

            schema = f"mlp_bench_{secrets.token_hex(4)}"
            with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
        try:
            yield data_dir, url
        finally:
            if schema:
                import psycopg

                with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench_tenant(url: str) -> tuple[Database, str, str]:
    """The migrated database, its one tenant and that tenant's API key."""
    db = Database(url)
    db.upgrade()
    auth = AuthService(db, TokenCodec("unused"))
    tenant = auth.create_tenant("bench")
    return db, tenant.id, auth.create_api_key("bench", "bench").plaintext


def wait_for_position(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job once the scheduler wrote its queue position (or after 120 s)."""
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/training/{job_id}").json()
        if job["queue_position"] is not None or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def bench_pending_queue(backend: str, pending: int, creates: int) -> tuple[float, float, int]:
    """Sequential create latency with the scheduler ON and ``pending`` jobs queued: the
    tenant's quota holds every job (``max_concurrent_jobs`` 0), so the queue only grows and
    each submit wakes a scheduler that has the whole queue to consider."""
    with backend_store(backend) as (data_dir, url):
        db, tenant_id, key = bench_tenant(url)
        with db.transaction() as session:
            session.add(
                TenantQuotaRow(tenant_id=tenant_id, max_concurrent_jobs=0, updated_at=utcnow())
            )
        load_jobs(db, tenant_id, pending, statuses=("pending",))
        data = data_dir / "tenants" / tenant_id / "d"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("a,b\n1,2\n")
        proc, base, _ = start_platform_server(
            data_dir,
            database_url=url,
            env={
                "ML_PLATFORM_SCHEDULER_ENABLED": "true",
                "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",
                "ML_PLATFORM_TENANT_MAX_QUEUED_JOBS": str(pending + creates + 100),
            },
        )
        try:
            with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
                for _ in range(20):
                    timed(client, "GET", "/v1/jobs/training")
                if pending:  # measure the steady state: the loaded queue's positions written
                    newest = client.get("/v1/jobs/training", params={"page_size": 1}).json()
                    wait_for_position(client, newest["jobs"][0]["id"])
                samples = []
                for _ in range(creates):
                    response = client.post("/v1/jobs/training", json=SPEC)
                    assert response.status_code == 201, response.text
                    samples.append(response.elapsed.total_seconds() * 1000)
                last = wait_for_position(client, response.json()["id"])
        finally:
            stop_server(proc)
        db.dispose()
        print(
            f"{backend} {pending} pending: last job says {last['pending_reason']!r}",
            file=sys.stderr,
        )
        return median(samples), percentile(samples, 99), int(last["queue_position"])


def pending_queue_rows(
    backend: str, counts: list[int], creates: int, rounds: int
) -> tuple[list[str], list[float]]:
    """Table rows (medians over ``rounds``, the p50s' spread) and, per round, the create p50
    with the largest queue over the one with the smallest. Rounds alternate the order of
    the queue sizes (forward, then backward) so the host's drift does not favour one."""
    results: dict[int, list[tuple[float, float, int]]] = {n: [] for n in counts}
    for r in range(rounds):
        for pending in counts if r % 2 == 0 else counts[::-1]:
            results[pending].append(bench_pending_queue(backend, pending, creates))
            p50, p99, _ = results[pending][-1]
            print(f"round {r + 1}: {backend} {pending:,} pending: p50 {p50:.2f} p99 {p99:.2f}",
                  file=sys.stderr, flush=True)  # fmt: skip
    rows = []
    for pending in counts:
        p50s = [p50 for p50, _, _ in results[pending]]
        p99s = [p99 for _, p99, _ in results[pending]]
        rows.append(
            f"| {backend} | {pending:,} | {median(p50s):.2f} ({min(p50s):.2f}-{max(p50s):.2f}) | "
            f"{median(p99s):.2f} | {results[pending][-1][2]} |"
        )
    smallest, largest = min(counts), max(counts)
    ratios = [results[largest][r][0] / results[smallest][r][0] for r in range(rounds)]
    return rows, ratios


def bench_backend(backend: str, jobs: int, creates: int) -> list[str]:
    with backend_store(backend) as (data_dir, url):
        db, tenant_id, key = bench_tenant(url)
        started = time.perf_counter()
        load_jobs(db, tenant_id, jobs)
        load_seconds = time.perf_counter() - started
        proc, base, _ = start_platform_server(
            data_dir,
            database_url=url,
            # the loaded jobs are rows, not processes: keep the scheduler off them
            # and the per-tenant rate limit off: the bench is one tenant's burst
            env={
                "ML_PLATFORM_SCHEDULER_ENABLED": "false",
                "ML_PLATFORM_RATE_LIMIT_ENABLED": "false",
            },
        )
        try:
            rows = run_requests(base, key, creates)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        db.dispose()
        print(f"{backend}: loaded {jobs} jobs in {load_seconds:.1f}s", file=sys.stderr)
        return [f"| {backend} | {r}" for r in rows]


def run_requests(base: str, key: str, creates: int) -> list[str]:
    headers = {"X-API-Key": key}
    rows: list[str] = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm up connections and caches
            timed(client, "GET", "/v1/jobs/training")
        queries = {
            "list, default page (50)": {},
            "list, status=running": {"status": "running"},
            "list, framework=xgboost, page 100": {"framework": "xgboost", "page": 100},
            "list, status=running, framework=xgboost": {
                "status": "running",
                "framework": "xgboost",
            },
            "list, tags=team=team-3": {"tags": "team=team-3"},
            "list, tags=team=team-3, page 50": {"tags": "team=team-3", "page": 50},
            "list, tags=team=team-3,project=p-2": {"tags": "team=team-3,project=p-2"},
            "list, status=failed, tags=team=team-3": {"status": "failed", "tags": "team=team-3"},
            "list, framework=pytorch, tags=team=team-4": {
                "framework": "pytorch",
                "tags": "team=team-4",
            },
            "list, status+framework+2 tags (no match)": {
                "status": "failed",
                "framework": "pytorch",
                "tags": "team=team-3,project=p-2",
            },
            "list, page_size=500": {"page_size": 500},
        }
        for label, params in queries.items():
            samples = [timed(client, "GET", "/v1/jobs/training", params=params) for _ in range(200)]
            rows.append(f"{label} | {median(samples):.2f} | {percentile(samples, 99):.2f} | |")

        rows.extend(upload_rows(client))

    clients = [httpx.Client(base_url=base, headers=headers, timeout=30) for _ in range(8)]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            samples = list(
                pool.map(
                    lambda i: timed(clients[i % 8], "POST", "/v1/jobs/training", json=SPEC),
                    range(creates),
                )
            )
        elapsed = time.perf_counter() - started
    finally:
        for c in clients:
            c.close()
    rows.append(
        f"create job (8 concurrent clients) | {median(samples):.2f} | {percentile(samples, 99):.2f} | {creates / elapsed:.0f} |"
    )
    return rows


def forest_artifact() -> bytes:
    """A 10-tree scikit-learn forest on 4 named features, as joblib bytes."""
    import io

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    buffer = io.BytesIO()
    joblib.dump(model.fit(frame, frame["a"] > 0), buffer)
    return buffer.getvalue()


def upload_rows(client: httpx.Client, uploads: int = 30) -> list[str]:
    """Model version registration, signature inference included: the server's first (which
    starts the inference process) and the next ``uploads``."""
    payload = forest_artifact()
    created = client.post("/v1/models", json={"name": "bench-forest", "framework": "sklearn"})
    if created.status_code != 201:
        raise RuntimeError(f"POST /v1/models: {created.status_code} {created.text[:200]}")

    def upload() -> float:
        files = {"file": ("model.joblib", payload)}
        return timed(client, "POST", "/v1/models/bench-forest/versions", files=files)

    first = upload()
    samples = [upload() for _ in range(uploads)]
    return [
        f"register a model version (joblib forest), the server's first | {first:.2f} | {first:.2f} | |",
        f"register a model version (joblib forest), the next {uploads} | "
        f"{median(samples):.2f} | {percentile(samples, 99):.2f} | |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--pending-queue",
        default="",
        help="e.g. 0,1000,10000: only the scheduler-on create latency with that many pending",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="--pending-queue: rounds of every queue size"
    )
    args = parser.parse_args()
    if args.pending_queue:
        counts = [int(n) for n in args.pending_queue.split(",")]
        queue_lines = [
            "| backend | pending jobs | create p50 ms (spread) | create p99 ms | "
            "last job's position |",
            "|---|---|---|---|---|",
        ]
        ratio_lines = []
        for backend in args.backends.split(","):
            rows, ratios = pending_queue_rows(backend, counts, min(args.creates, 300), args.rounds)
            queue_lines.extend(rows)
            ratio_lines.append(
                f"{backend}: create p50 with {max(counts):,} pending / with {min(counts):,}, "
                f"per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
                f"median {median(ratios):.2f}"
            )
        queue_table = "\n".join(queue_lines) + "\n\n" + "\n".join(ratio_lines)
        print(queue_table)
        write_section(
            "Control plane: creates with a growing queue",
            f"Command: `.venv/bin/python bench/control_plane.py --backends {args.backends} "
            f"--pending-queue {args.pending_queue}`. One tenant whose quota holds every job "
            "(`max_concurrent_jobs` 0) and the given number of pending jobs already queued; "
            "the server (`mlp server`, scheduler ON, woken by every submit) and the client "
            f"share this machine; {min(args.creates, 300)} sequential creates per run after the "
            f"queue's positions are written, {args.rounds} rounds of every queue size (a fresh "
            "store each; the order alternates forward and backward between rounds); cells are "
            "medians over the rounds, the spread the rounds' p50s. Load average at the end of "
            "the run: "
            f"{os.getloadavg()[0]:.1f}.\n"
            "Target (issue 15): create p50 with 10,000 pending <= 1.5x create p50 with none.\n\n"
            + queue_table,
        )
        return 0
    lines = [
        "| backend | operation | p50 ms | p99 ms | creates/s |",
        "|---|---|---|---|---|",
    ]
    for backend in args.backends.split(","):
        lines.extend(bench_backend(backend, args.jobs, args.creates))
    table = "\n".join(lines)
    print(table)
    body = (
        f"Command: `.venv/bin/python bench/control_plane.py --jobs {args.jobs} --creates {args.creates}` "
        f"(`make bench`). One tenant holding {args.jobs:,} jobs; the server (`mlp server`, one uvicorn "
        "process, scheduler and serving plane off) and the client share this machine; latencies are wall-clock per request over "
        "loopback (200 requests per row, after 20 warm-up requests; the model uploads: the "
        "server's first, then 30, each inferring the signature from the artifact).\n"
        "Target (issue 2): list p99 under 20 ms at 100k jobs on PostgreSQL.\n\n" + table
    )
    write_section("Control plane", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
