"""Shared fixtures: a real platform per backend (SQLite and PostgreSQL) behind a real socket.

Each backend gets one migrated database for the whole run (PostgreSQL: a private schema that
is dropped at the end) and one uvicorn server on 127.0.0.1:<free port>. Tests isolate
themselves by creating their own tenants, so they never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ml_platform.api.context import ApiContext
from ml_platform.config import Settings
from ml_platform.server.app import create_app
from ml_platform.server.context import build_context
from ml_platform.store.db import Database

if TYPE_CHECKING:
    from ml_platform.serving import ServingServer

PG_BASE_URL = os.environ.get(
    "ML_PLATFORM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# budgets off for every test and every `mlp server` it spawns; test_rate_limits.py turns them on
os.environ.setdefault("ML_PLATFORM_RATE_LIMIT_ENABLED", "false")
BACKENDS = ("sqlite", "postgres")
TEST_JWT_SECRET = "test-secret-" + "x" * 32


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked ``slow`` (``pytestmark``) first, each file's own order kept.

    ``make test`` deals whole files to its workers in collection order (``--dist loadfile``):
    a long file dealt last runs alone while the other workers sit idle, so the long ones go
    out first and the short ones fill in behind them.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass
class Tenant:
    id: str
    name: str
    api_key: str


@dataclass
class Platform:
    """A running control plane: its settings, services and base URL."""

    backend: str
    settings: Settings
    context: ApiContext
    base_url: str
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.context.db

    def new_tenant(self, prefix: str = "t") -> Tenant:
        name = f"{prefix}-{secrets.token_hex(4)}"
        tenant = self.context.auth.create_tenant(name)
        key = self.context.auth.create_api_key(name, f"{name}-key")
        return Tenant(id=tenant.id, name=name, api_key=key.plaintext)

    def client(self, tenant: Tenant | None = None, **headers: str) -> httpx.Client:
        all_headers = dict(headers)
        if tenant is not None:
            all_headers["X-API-Key"] = tenant.api_key
        client = httpx.Client(base_url=self.base_url, headers=all_headers, timeout=30)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _postgres_database(schema: str) -> str:
    import psycopg

    raw = PG_BASE_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


def _drop_postgres_schema(schema: str) -> None:
    import psycopg

    raw = PG_BASE_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def database_url_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Returns ``make(backend) -> url``; every PostgreSQL schema it made is dropped at the end."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'mlp.db'}"
        schema = f"mlp_test_{os.getpid()}_{secrets.token_hex(4)}"
        schemas.append(schema)
        return _postgres_database(schema)

    yield make
    for schema in schemas:
        _drop_postgres_schema(schema)


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "config_dir": data_dir / "config",
        "jwt_secret": TEST_JWT_SECRET,
        "port": 0,
        "grpc_port": 0,
        # API tests see jobs stay pending; tests/jobs start platforms with the scheduler on.
        "scheduler_enabled": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class ServerThread:
    """uvicorn on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, app: object) -> None:
        self._walks_routes = isinstance(app, FastAPI)  # not the tests' proxies: they count calls
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        # FastAPI builds a route's parameter models lazily, on the first request that walks
        # past it, and shares the FieldInfo of module-level Annotated types (TagsQuery, ...)
        # between apps. Several apps in one process (replica tests), each building them on its
        # own thread at the same moment, race on those objects (pydantic then warns, which
        # the suite's warnings-as-errors turns into a 500). A production process holds one app
        # on one event loop; here, one unmatched request walks every route once, before any
        # test traffic.
        if self._walks_routes:
            httpx.get(f"{base_url}/.mlp-warm-up", timeout=30)
        return base_url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_platform(
    backend: str, data_dir: Path, database_url: str, **overrides: object
) -> tuple[Platform, ServerThread]:
    settings = make_settings(data_dir, database_url, **overrides)
    context = build_context(settings)
    context.db.upgrade()
    server = ServerThread(create_app(settings, context))
    base_url = server.start()
    return Platform(backend=backend, settings=settings, context=context, base_url=base_url), server


@pytest.fixture(scope="session", params=BACKENDS)
def platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: object,
) -> Iterator[Platform]:
    backend: str = request.param
    url = database_url_factory(backend)  # type: ignore[operator]
    running, server = start_platform(backend, tmp_path_factory.mktemp(f"data-{backend}"), url)
    yield running
    running.close()
    server.stop()
    running.db.dispose()


@pytest.fixture
def tenant(platform: Platform) -> Tenant:
    return platform.new_tenant()


@pytest.fixture
def client(platform: Platform, tenant: Tenant) -> httpx.Client:
    return platform.client(tenant)


@contextmanager
def serving_plane(platform: Platform, workers: int = 1) -> Iterator[ServingServer]:
    """The platform's serving plane (supervisor + worker processes) on free loopback ports,
    wired to its store as ``mlp server`` wires it, re-reading deployments every 0.1 s."""
    from ml_platform.server.serving_bridge import build_serving

    settings = platform.settings.model_copy(
        update={
            "grpc_port": 0,
            "serving_rest_port": 0,
            "serving_workers": workers,
            "serving_source_poll_seconds": 0.1,
        }
    )
    server = build_serving(platform.context, settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
