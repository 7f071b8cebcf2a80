"""``kill -9`` of the server mid-run, then a restart: no job stays ``running``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ml_platform.server.app import build_context
from tests.conftest import TEST_JWT_SECRET

LAUNCHER = """
import uvicorn
from ml_platform.server.app import build_context, create_app
from ml_platform.config import Settings
settings = Settings()
context = build_context(settings)
context.db.upgrade()
uvicorn.run(create_app(settings, context), host="127.0.0.1", port=settings.port,
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], env=env)
        self.base_url = f"http://127.0.0.1:{port}"
        while True:  # bounded by the test timeout
            if self.process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if httpx.get(self.base_url + "/livez", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")},
        "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "ML_PLATFORM_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'mlp.db'}",
        "ML_PLATFORM_JWT_SECRET": TEST_JWT_SECRET,
        "ML_PLATFORM_PORT": str(port),
        "ML_PLATFORM_NODE_CPU_CORES": "4",
        "ML_PLATFORM_NODE_MEMORY_GB": "8",
        "ML_PLATFORM_SCHEDULER_INTERVAL_SECONDS": "0.2",
        "ML_PLATFORM_SCHEDULER_LEASE_SECONDS": "1",
        "ML_PLATFORM_CANCEL_GRACE_SECONDS": "1",
    }
    yield env, f"http://127.0.0.1:{port}"


def _api_key(env: dict[str, str]) -> str:
    from ml_platform.config import Settings

    settings = Settings(
        data_dir=Path(env["ML_PLATFORM_DATA_DIR"]),
        database_url=env["ML_PLATFORM_DATABASE_URL"],
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        scheduler_enabled=False,
    )
    context = build_context(settings)
    context.db.upgrade()
    context.auth.create_tenant("crash")
    key = context.auth.create_api_key("crash", "crash-key").plaintext
    context.db.dispose()
    return key


def test_kill9_then_restart_leaves_no_job_running(server_env: tuple[dict[str, str], str]) -> None:
    env, _ = server_env
    key = _api_key(env)
    first = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
    try:
        client = httpx.Client(base_url=first.base_url, headers={"X-API-Key": key}, timeout=30)
        body = {
            "name": "long", "framework": "sklearn", "docker_image": "python:3.11",
            "entrypoint": "python -c \"import time; print('up', flush=True); time.sleep(600)\"",
            "data_path": "data.csv", "output_path": "out",
            "compute": {"cpu_cores": 1, "memory_gb": 1},
        }
        job_id = client.post("/v1/jobs/training", json=body).json()["id"]
        while client.get(f"/v1/jobs/training/{job_id}").json()["status"] != "running":
            time.sleep(0.05)
        state = Path(env["ML_PLATFORM_DATA_DIR"]) / "jobs" / job_id / "state.json"
        while not state.exists():
            time.sleep(0.05)
        import json

        pid = json.loads(state.read_text())["pid"]
        first.kill9()
        assert psutil.pid_exists(pid)  # the job outlived its server
    finally:
        first.stop()
    second = ServerProcess(env, int(env["ML_PLATFORM_PORT"]))
    try:
        client = httpx.Client(base_url=second.base_url, headers={"X-API-Key": key}, timeout=30)
        while (job := client.get(f"/v1/jobs/training/{job_id}").json())["status"] == "running":
            time.sleep(0.1)
        assert job["status"] == "failed"
        assert "server restarted" in job["error_message"]
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        second.stop()
