"""A generated events file and the brute-force answers the feature store must reproduce."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

START = datetime(2026, 11, 1, tzinfo=UTC)
FEATURES = [("orders", "int64"), ("spend", "float64"), ("segment", "string"), ("active", "bool")]


@dataclass
class Events:
    rows: list[dict[str, Any]]  # customer_id, event_timestamp (datetime), features

    def csv(self) -> bytes:
        out = io.StringIO()
        out.write("customer_id,event_timestamp,orders,spend,segment,active\n")
        for r in self.rows:
            out.write(
                f"{r['customer_id']},{r['event_timestamp'].isoformat()},{r['orders']},"
                f"{r['spend']!r},{r['segment']},{r['active']}\n"
            )
        return out.getvalue().encode()

    def latest(self, after: datetime | None = None) -> dict[int, dict[str, Any]]:
        """The newest row per customer (rows after ``after`` only)."""
        best: dict[int, dict[str, Any]] = {}
        for r in self.rows:
            if after is not None and r["event_timestamp"] <= after:
                continue
            cur = best.get(r["customer_id"])
            if cur is None or r["event_timestamp"] >= cur["event_timestamp"]:
                best[r["customer_id"]] = r
        return best

    def as_of(self, customer_id: int, ts: datetime, ttl: timedelta | None) -> dict[str, Any] | None:
        """Brute force point in time: the newest row of the key at or before ``ts``."""
        best = None
        for r in self.rows:
            if r["customer_id"] != customer_id or r["event_timestamp"] > ts:
                continue
            if ttl is not None and ts - r["event_timestamp"] > ttl:
                continue
            if best is None or r["event_timestamp"] >= best["event_timestamp"]:
                best = r
        return best


def generate(n_customers: int = 100, n_rows: int = 2000, seed: int = 7) -> Events:
    """Unique timestamps (minutes apart, shuffled order) so 'latest' has one answer."""
    rng = random.Random(seed)
    minutes = rng.sample(range(60 * 24 * 20), n_rows)
    rows = []
    for m in minutes:
        rows.append(
            {
                "customer_id": rng.randrange(1, n_customers + 1),
                "event_timestamp": START + timedelta(minutes=m),
                "orders": rng.randrange(0, 50),
                "spend": round(rng.uniform(0, 500), 2),
                "segment": rng.choice(["gold", "silver", "bronze"]),
                "active": rng.random() < 0.5,
            }
        )
    return Events(rows)


def upload(client: httpx.Client, path: str, content: bytes) -> None:
    response = client.put(f"/v1/data/{path}", content=content)
    assert response.status_code in (200, 201), response.text


def define(
    client: httpx.Client,
    path: str,
    *,
    view: str = "customer_stats",
    ttl_seconds: int = 0,
    entity: str = "customer",
) -> dict[str, Any]:
    """The customer entity (once) and a view over ``path`` with every feature."""
    if client.get(f"/v1/features/entities/{entity}").status_code == 404:
        created = client.post(
            "/v1/features/entities",
            json={"name": entity, "join_keys": {"customer_id": "int64"}},
        )
        assert created.status_code == 201, created.text
    response = client.post(
        "/v1/features/views",
        json={
            "name": view,
            "entity": entity,
            "features": dict(FEATURES),
            "source": {"path": path},
            "timestamp_field": "event_timestamp",
            "ttl_seconds": ttl_seconds,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def materialize(client: httpx.Client, view: str = "customer_stats") -> dict[str, Any]:
    """Start a run and wait for it to end; returns the finished run."""
    import time

    started = client.post(f"/v1/features/views/{view}/materializations")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = client.get(location).json()
        if run["status"] != "running":
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
