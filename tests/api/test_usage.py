"""Per-tenant API usage, both stores: every /v1 and /v2 request counted (counted, not timed)
per tenant, version, method and route template; visible to administrators only through
``GET /v1/admin/usage`` and ``mlp admin usage``; a flush at shutdown keeps every count."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ml_platform.store.usage import ANONYMOUS, UsageKey, UsageStore
from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant, start_platform


def _admin(platform: Platform) -> Tenant:
    name = f"ops-{secrets.token_hex(4)}"
    tenant = platform.context.auth.create_tenant(name)
    key = platform.context.auth.create_api_key(name, f"{name}-admin", admin=True)
    return Tenant(id=tenant.id, name=name, api_key=key.plaintext)


def _usage(platform: Platform, admin: Tenant, **params: str) -> list[dict[str, Any]]:
    response = platform.client(admin).get("/v1/admin/usage", params={"page_size": 1000, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["usage"]) and body["has_more"] is False
    return list(body["usage"])


def _by_route(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter({(r["api_version"], r["method"], r["route"]): r["count"] for r in rows})


def test_every_versioned_request_is_counted_per_tenant_and_route(platform: Platform) -> None:
    one, two = platform.new_tenant("use"), platform.new_tenant("use")
    admin = _admin(platform)
    first, second = platform.client(one), platform.client(two)
    for _ in range(3):
        assert first.get("/v1/jobs/training").status_code == 200
    created = first.post("/v1/jobs/training", json=spec())
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert first.get(f"/v1/jobs/training/{job_id}").status_code == 200
    assert first.get(f"/v2/jobs/training/{job_id}").status_code == 200
    assert first.get("/v1/jobs/training/job_nope").status_code == 404
    assert second.get("/v2/jobs/training").status_code == 200
    assert first.get("/healthz").status_code == 200  # unversioned: not counted

    rows = _usage(platform, admin, tenant=one.name)
    assert {r["tenant_id"] for r in rows} == {one.id}
    assert {r["tenant"] for r in rows} == {one.name}
    assert {r["day"] for r in rows} == {datetime.now(UTC).date().isoformat()}
    assert _by_route(rows) == Counter(
        {
            ("v1", "GET", "/v1/jobs/training"): 3,
            ("v1", "POST", "/v1/jobs/training"): 1,
            ("v1", "GET", "/v1/jobs/training/{job_id}"): 2,
            ("v2", "GET", "/v2/jobs/training/{job_id}"): 1,
        }
    )
    assert _by_route(_usage(platform, admin, tenant=one.id, version="v2")) == Counter(
        {("v2", "GET", "/v2/jobs/training/{job_id}"): 1}
    )
    assert _by_route(_usage(platform, admin, tenant=two.name)) == Counter(
        {("v2", "GET", "/v2/jobs/training"): 1}
    )
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert _usage(platform, admin, tenant=one.name, since=tomorrow) == []
    # the admin's own reads are v1 requests of its tenant too
    assert (
        _by_route(_usage(platform, admin, tenant=admin.name))[("v1", "GET", "/v1/admin/usage")] >= 4
    )


def test_usage_is_for_administrators_only(platform: Platform, tenant: Tenant) -> None:
    denied = platform.client(tenant).get("/v1/admin/usage")
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["code"] == "ADMIN_REQUIRED"
    assert platform.client().get("/v1/admin/usage").status_code == 401
    admin = _admin(platform)
    bad = platform.client(admin).get("/v1/admin/usage", params={"version": "v1; drop"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"].endswith("version")
    page = platform.client(admin).get("/v1/admin/usage", params={"page_size": 1})
    assert page.status_code == 200 and len(page.json()["usage"]) == 1


def test_unauthenticated_requests_are_counted_as_nobody(platform: Platform) -> None:
    store = UsageStore(platform.db)
    before = sum(c.count for c in store.counts(tenant_id=ANONYMOUS, api_version="v1"))
    anonymous = platform.client()
    for _ in range(2):
        assert anonymous.get("/v1/jobs/training").status_code == 401
    admin = _admin(platform)
    platform.client(admin).get("/v1/admin/usage")  # flushes this replica's counts
    after = store.counts(tenant_id=ANONYMOUS, api_version="v1")
    assert sum(c.count for c in after) - before == 2
    assert all(c.as_dict()["tenant_id"] is None for c in after)


def test_concurrent_flushes_add_up(platform: Platform) -> None:
    """Replicas flush the same keys at once: the upserts never lose an increment."""
    import threading

    store = UsageStore(platform.db)
    key = UsageKey(date(2001, 1, 1), f"ten_{secrets.token_hex(6)}", "v1", "GET", "/v1/x")
    barrier = threading.Barrier(4)

    def flush() -> None:
        barrier.wait()
        for _ in range(5):
            store.add({key: 3})

    threads = [threading.Thread(target=flush) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (row,) = store.counts(tenant_id=key.tenant_id)
    assert row.count == 4 * 5 * 3


def test_shutdown_flushes_every_count(
    platform: Platform, database_url_factory: Any, tmp_path: Path
) -> None:
    """A server that never reached its periodic flush still stores every request it
    answered: the lifespan flushes on shutdown. Then ``mlp admin usage`` shows them."""
    url = database_url_factory(platform.backend)
    running, server = start_platform(
        platform.backend, tmp_path / "data", url, usage_flush_seconds=3600
    )
    try:
        tenant = running.new_tenant("flush")
        client = running.client(tenant)
        for _ in range(25):
            assert client.get("/v1/jobs/training").status_code == 200
        store = UsageStore(running.db)
        assert store.counts(tenant_id=tenant.id) == []  # nothing flushed yet
    finally:
        running.close()
        server.stop()
    (row,) = store.counts(tenant_id=tenant.id)
    assert (row.key.api_version, row.key.method, row.key.route, row.count) == (
        "v1",
        "GET",
        "/v1/jobs/training",
        25,
    )
    cli = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlp")),
            "admin",
            "usage",
            "--tenant",
            tenant.name,
            "--version",
            "v1",
            "--since",
            "1d",
            "--output",
            "json",
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config")},
    )
    assert cli.returncode == 0, cli.stderr
    listed = json.loads(cli.stdout)
    assert [(r["tenant"], r["route"], r["count"]) for r in listed] == [
        (tenant.name, "/v1/jobs/training", 25)
    ]
    if platform.backend != "sqlite":
        return  # the table is the same code on both stores: once is enough
    table = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlp")),
            "admin",
            "usage",
            "--tenant",
            tenant.id,
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "250"},
    )
    assert table.returncode == 0, table.stderr
    assert tenant.name in table.stdout and "/v1/jobs/training" in table.stdout
    assert "25" in table.stdout


def test_cli_rejects_a_bad_since(tmp_path: Path) -> None:
    since = "7x"
    cli = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlp")),
            "admin",
            "usage",
            "--since",
            since,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config")},
    )
    assert cli.returncode == 2 and "--since" in cli.stderr and "Traceback" not in cli.stderr
