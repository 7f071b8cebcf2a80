"""``mlp admin`` and ``mlp server`` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

pytestmark = pytest.mark.slow

MLP = [sys.executable, "-m", "ml_platform.cli.main"]


def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*MLP, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"),
        "ML_PLATFORM_JWT_SECRET": "cli-test-secret-" + "z" * 32,
    }


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_admin_commands_print_json_documents(env: dict[str, str], tmp_path: Path) -> None:
    tenant = _json(run("admin", "create-tenant", "acme", "-o", "json", env=env))
    assert tenant["name"] == "acme" and tenant["id"].startswith("ten_")
    key = _json(
        run("admin", "create-api-key", "--tenant", "acme", "--name", "ci", "-o", "json", env=env)
    )
    assert key["api_key"].startswith("mlp_") and key["tenant_id"] == tenant["id"]
    token = _json(
        run("admin", "issue-token", "--tenant", "acme", "--subject", "bob", "-o", "json", env=env)
    )
    assert token["token"].count(".") == 2
    revoked = _json(run("admin", "revoke-api-key", key["id"], "-o", "json", env=env))
    assert revoked["id"] == key["id"] and revoked["revoked_at"]
    # the key never lands in the database in clear
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("mlp.db*"))
    assert key["api_key"].encode() not in db_bytes


def test_admin_errors_are_clear(env: dict[str, str]) -> None:
    run("admin", "create-tenant", "acme", env=env)
    dup = run("admin", "create-tenant", "acme", env=env, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = run("admin", "create-tenant", "Not Valid", env=env, check=False)
    assert bad.returncode == 1 and "must match" in bad.stderr
    missing = run("admin", "create-api-key", "--tenant", "ghost", env=env, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert "Traceback" not in dup.stderr + bad.stderr + missing.stderr


def test_server_first_start_prints_key_and_writes_credentials(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *MLP,
            "server",
            "--port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--serving-rest-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "REST API on" in line:
                break
        output = "".join(lines)
        assert "gRPC data plane on 127.0.0.1:" in output
        creds_file = tmp_path / "config" / "credentials.json"
        creds = json.loads(creds_file.read_text())
        assert creds["api_key"] in output
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"X-API-Key": creds["api_key"]}
        body = {
            "name": "q",
            "framework": "sklearn",
            "docker_image": "i",
            "data_path": "d",
            "output_path": "o",
        }
        created = httpx.post(f"{base}/v1/jobs/training", json=body, headers=headers)
        assert created.status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # a second start does not mint another key
    again = subprocess.run(
        [*MLP, "admin", "create-tenant", "second", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout)["name"] == "second"
