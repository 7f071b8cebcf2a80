"""``mlp server`` stops what it started: SIGTERM (what systemd, Docker and Kubernetes send)
ends the serving supervisor and its workers with the server, removes the supervisor's run
directory and frees the gRPC port.

uvicorn re-raises the signal once the app has shut down, so code after ``uvicorn.run`` never
runs on SIGTERM; the serving plane used to be stopped there, and its processes outlived the
server until they noticed their parent was gone, and the run directory was left behind.
"""

from __future__ import annotations

import os
import re
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


def _wait_until(what: str, check: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``check`` until it holds; fail at once (with the server's log) if the server
    exits, and after 120 s."""
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the server exited ({proc.returncode}) before {what}:\n" + log.read_text()
            )
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.TransportError, grpc.RpcError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n" + log.read_text())


def _bound_ports(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, int]:
    """The REST and gRPC ports a server started on port 0 bound, as it printed them: every
    port is the kernel's choice, so no other process on the machine can have taken it."""
    found: dict[str, int] = {}

    def printed() -> bool:
        text = log.read_text()
        for name, pattern in (
            ("rest", r"Uvicorn running on http://[\d.]+:(\d+)"),
            ("grpc", r"gRPC data plane on [\d.]+:(\d+)"),
        ):
            match = re.search(pattern, text)
            if match:
                found[name] = int(match.group(1))
        return len(found) == 2

    _wait_until("its listening ports", printed, proc, log)
    return found["rest"], found["grpc"]


def _mlp(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``mlp <args>`` on a data dir of its own; stdout and stderr into one log file (a pipe
    nobody reads would block the server once it filled)."""
    env = {
        **os.environ,
        "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "ML_PLATFORM_CONFIG_DIR": str(tmp_path / "config"),
        "ML_PLATFORM_JWT_SECRET": "shutdown-test-secret-" + "z" * 32,
        "ML_PLATFORM_SERVING_WORKERS": "1",
        "COLUMNS": "200",  # one printed line per message
        "TMPDIR": str(tmp_path / "tmp"),  # where the supervisor makes its run directory
    }
    (tmp_path / "tmp").mkdir(exist_ok=True)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*MLP, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_serving_plane_with_the_server(
    tmp_path: Path, signum: signal.Signals
) -> None:
    proc, log = _mlp(
        tmp_path, "server", "--port", "0", "--grpc-port", "0", "--serving-rest-port", "0"
    )
    try:
        port, grpc_port = _bound_ports(proc, log)
        _wait_until(
            "the REST API",
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
            proc,
            log,
        )
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            # a worker answers health checks once it runs: the plane is fully started
            _wait_until(
                "a serving worker",
                lambda: (
                    health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2) is not None
                ),
                proc,
                log,
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
    output = log.read_text()
    assert "Traceback" not in output, output
    alive = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"serving processes outlived the server: {alive}"
    # the supervisor's own shutdown ran: its run directory (sandbox sockets) is gone
    assert [d for d in run_dirs if d.exists()] == []
    with socket.socket() as sock:  # the gRPC port is free for the next start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", grpc_port))


@pytest.mark.parametrize(
    ("command", "taken"),
    [("server", "--serving-rest-port"), ("serve", "--grpc-port")],
)
def test_a_taken_serving_port_stops_the_start_with_one_clear_line(
    tmp_path: Path, command: str, taken: str
) -> None:
    """A port another process holds ends the start with the port named, exit code 1 and no
    traceback. ``mlp server`` used to print the data plane as started and serve REST with no
    data plane at all, its gRPC port bound but never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        ports = {"--grpc-port": "0", "--serving-rest-port": "0", taken: str(held)}
        args = [command, *(part for item in ports.items() for part in item)]
        if command == "server":
            args += ["--port", "0"]
        proc, log = _mlp(tmp_path, *args)
        try:
            assert proc.wait(timeout=60) == 1, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log.read_text()
    assert (
        f"error: cannot start the serving plane: [Errno 98] cannot bind 127.0.0.1:{held}" in output
    ), output
    assert "Traceback" not in output, output
    assert not list((tmp_path / "tmp").glob("mlp-serving-*")), "the run directory was left behind"
