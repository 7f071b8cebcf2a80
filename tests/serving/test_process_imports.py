"""What the platform's own processes import at start-up, in a fresh interpreter: a serving
worker, a tenant sandbox and the control plane never load the SDK, redis-py (without a Redis
URL) or pandas, and the services the admin commands build load no REST framework. Each costs
every process start about 0.2-1 s (a worker restart, a sandbox per tenant, every `mlp` admin
command)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
heavy = tuple(sys.argv[1].split(","))
for module in sys.argv[2:]:
    __import__(module)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def _loaded(
    *modules: str, heavy: tuple[str, ...] = ("ml_platform.client", "redis", "pandas")
) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(heavy), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["ml_platform.serving.workers.worker", "ml_platform.serving.sandbox.child"]
)
def test_a_serving_process_loads_no_sdk_redis_or_pandas(module: str) -> None:
    assert _loaded(module) == []


def test_the_control_plane_loads_no_sdk_redis_or_pandas() -> None:
    # pandas comes with the first feature-source read, historical join or push
    assert _loaded("ml_platform.server.app", "ml_platform.config") == []


def test_the_admin_commands_services_load_no_rest_framework() -> None:
    # `mlp admin`, `mlp db` and `mlp serve` build the services, never the app and its routes
    web = ("fastapi", "starlette", "ml_platform.server.app", "ml_platform.api.v1")
    assert _loaded("ml_platform.server.context", "ml_platform.cli.admin", heavy=web) == []


def test_the_sdk_names_still_come_from_the_package() -> None:
    loaded = _loaded("ml_platform")
    assert loaded == []  # nothing until a name is used
    import ml_platform
    from ml_platform import AsyncClient, Client, ValidationError

    assert Client.__module__.startswith("ml_platform.client")
    assert AsyncClient is ml_platform.AsyncClient
    assert issubclass(ValidationError, ml_platform.MLPlatformError)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = ml_platform.Nope  # type: ignore[attr-defined]
