"""The generated API clients (clients/, `make clients`): one generator run per session.

The drift test compares that run with the committed trees; the live tests drive the committed
trees (what users get) against a real server, so a passing drift test means they drove what
the generator makes from today's openapi.json.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import BACKENDS, Platform, Tenant, start_platform

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "clients"


def gen_clients_script() -> ModuleType:
    """``scripts/gen_clients.py`` as a module (scripts/ is not a package)."""
    name = "gen_clients"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "gen_clients.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def freshly_generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Both clients generated from the committed openapi.json into a temporary directory."""
    out = tmp_path_factory.mktemp("generated-clients")
    gen_clients_script().generate(out)
    yield out


# The seed's snippet names s3://data/train.csv; remote locations are refused unless the
# operator allows their prefix for the tenant (Settings.allowed_uri_prefixes), as done here.
SEED_TENANT = "seed-snippet"
SEED_PREFIXES = ["s3://data/", "s3://models/"]


@pytest.fixture(scope="session", params=BACKENDS)
def clients_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: object,
) -> Iterator[Platform]:
    """A live platform (per backend) whose seed-snippet tenant may name the seed's s3 paths."""
    backend: str = request.param
    url = database_url_factory(backend)  # type: ignore[operator]
    running, server = start_platform(
        backend,
        tmp_path_factory.mktemp(f"clients-{backend}"),
        url,
        allowed_uri_prefixes={SEED_TENANT: SEED_PREFIXES},
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


@pytest.fixture(scope="session")
def seed_tenant(clients_platform: Platform) -> Tenant:
    tenant = clients_platform.context.auth.create_tenant(SEED_TENANT)
    key = clients_platform.context.auth.create_api_key(SEED_TENANT, f"{SEED_TENANT}-key")
    return Tenant(id=tenant.id, name=SEED_TENANT, api_key=key.plaintext)
