"""The generated TypeScript client: `tsc` type-checks and compiles it (no emit on any error),
then `node --test` drives the compiled client against a live server (its URL and key in env).

Its npm packages (axios, typescript) come from clients/typescript's committed lock through
`make node` (`npm ci`); the test fails with that command when they are missing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.generated_clients.conftest import CLIENTS

TS_CLIENT = CLIENTS / "typescript"
NODE_TEST = Path(__file__).parent / "typescript" / "training.test.mjs"


@pytest.fixture(scope="session")
def compiled_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tsc = TS_CLIENT / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        raise AssertionError("clients/typescript has no node_modules: run `make node`")
    out = tmp_path_factory.mktemp("ts-client") / "dist"
    run = subprocess.run(
        [str(tsc), "-p", str(TS_CLIENT), "--outDir", str(out), "--noEmitOnError"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"tsc failed:\n{run.stdout[-4000:]}{run.stderr[-2000:]}"
    return out


def test_typescript_client_against_a_live_server(
    compiled_client: Path, clients_platform: Platform
) -> None:
    tenant = clients_platform.new_tenant("ts-client")
    env = {
        **os.environ,
        "NODE_PATH": str(TS_CLIENT / "node_modules"),
        "MLP_CLIENT_DIST": str(compiled_client / "index.js"),
        "MLP_BASE_URL": clients_platform.base_url,
        "MLP_API_KEY": tenant.api_key,
    }
    run = subprocess.run(
        ["node", "--test", "--test-reporter=tap", str(NODE_TEST)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "# pass 3" in output and "# fail 0" in output, output[-3000:]
