"""``mlp server`` stops what it started: SIGTERM (what systemd, Docker and Kubernetes send)
ends the serving supervisor and its workers with the server, removes the supervisor's run
directory and frees the gRPC port.

uvicorn re-raises the signal once the app has shut down, so code after ``uvicorn.run`` never
runs on SIGTERM; the serving plane used to be stopped there, and its processes outlived the
server until they noticed their parent was gone, and the run directory was left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

MLP = [sys.executable, "-m", "ml_platform.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(what: str, check: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.TransportError, grpc.RpcError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_serving_plane_with_the_server(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"),
        "ML_PLATFORM_JWT_SECRET": "shutdown-test-secret-" + "z" * 32,
        "ML_PLATFORM_SERVING_WORKERS": "1",
        "TMPDIR": str(tmp_path / "tmp"),  # where the supervisor makes its run directory
    }
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(
        [
            *MLP,
            "server",
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--serving-rest-port",
            str(_free_port()),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until(
            "the REST API",
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            # a worker answers health checks once it runs: the plane is fully started
            _wait_until(
                "a serving worker",
                lambda: (
                    health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2) is not None
                ),
            )
        descendants = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            # multiprocessing's resource tracker leaves when its last user's pipe closes
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert descendants, "the serving plane started no process"
        run_dirs = list((tmp_path / "tmp").glob("mlp-serving-*"))
        assert run_dirs, "the supervisor made no run directory"
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    alive = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"serving processes outlived the server: {alive}"
    # the supervisor's own shutdown ran: its run directory (sandbox sockets) is gone
    assert [d for d in run_dirs if d.exists()] == []
    with socket.socket() as sock:  # the gRPC port is free for the next start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", grpc_port))
