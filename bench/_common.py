"""Helpers shared by the benchmarks: percentiles, free ports, the BENCHMARKS.md writer."""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(heading: str, body: str) -> None:
    """Replace (or append) the ``## heading`` section of BENCHMARKS.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {heading}\n\n"
        f"Recorded {stamp} at commit {git_revision()} on {machine()}.\n\n{body.strip()}\n"
    )
    text = (
        BENCHMARKS.read_text()
        if BENCHMARKS.exists()
        else "# Benchmarks\n\nProduced by `make bench`; each section is rewritten by its script.\n"
    )
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip() + "\n")


def start_platform_server(
    data_dir: Path,
    *,
    database_url: str | None = None,
    serving: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str, str | None]:
    """``mlp server`` as a subprocess on free ports: (process, REST base URL, gRPC target).

    The scheduler and everything else follow ``env`` (``ML_PLATFORM_*`` overrides); the
    gRPC target is None without the serving plane.
    """
    import sys
    import time

    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "ml_platform.cli.main",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if database_url is not None:
        command += ["--database-url", database_url]
    grpc_target = None
    if serving:
        grpc_port = free_port()
        command += ["--grpc-port", str(grpc_port), "--serving-rest-port", str(free_port())]
        grpc_target = f"127.0.0.1:{grpc_port}"
    else:
        command.append("--no-serving")
    environment = {
        **os.environ,
        "ML_PLATFORM_CONFIG_DIR": str(data_dir / "config"),
        "ML_PLATFORM_JWT_SECRET": "bench-" + "k" * 40,
        **(env or {}),
    }
    proc = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return proc, base, grpc_target
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mlp server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
