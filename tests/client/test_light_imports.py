"""The SDK (and its gRPC half) imports none of the server: a fresh interpreter per check."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "numpy", "orjson")


def _imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


def test_the_brief_check_passes() -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import ml_platform.client._grpc, sys; "
            "assert 'fastapi' not in sys.modules and 'sqlalchemy' not in sys.modules",
        ],
        check=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "code",
    [
        "import ml_platform.client._grpc",
        "from ml_platform.client import _grpc; _grpc.proto_modules()",
        "import ml_platform.serving.proto.serving_pb2_grpc",
        "from ml_platform import Client, AsyncClient",
    ],
)
def test_the_sdk_and_the_serving_protos_load_no_server_code(code: str) -> None:
    modules = _imported(code)
    assert not modules & set(SERVER_ONLY), sorted(modules & set(SERVER_ONLY))
    serving = {m for m in modules if m.startswith("ml_platform.serving")}
    assert serving <= {
        "ml_platform.serving",
        "ml_platform.serving.proto",
        "ml_platform.serving.proto.serving_pb2",
        "ml_platform.serving.proto.serving_pb2_grpc",
    }, sorted(serving)


def test_the_serving_package_still_exports_everything_lazily() -> None:
    modules = _imported(
        "import ml_platform.serving as serving\n"
        "assert sorted(serving.__all__) == serving.__all__\n"
        "assert all(getattr(serving, name) is not None for name in serving.__all__)\n"
        "from ml_platform.serving import ServingServer, ArtifactFormat, run_serving\n"
        "from ml_platform.serving.workers.server import ServingServer as Direct\n"
        "assert ServingServer is Direct\n"
        "try:\n"
        "    serving.NoSuchThing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    assert "ml_platform.serving.workers.server" in modules
