"""A Ray head of the calling test's own on loopback, stopped by its pid.

``ray stop --force`` would kill every Ray cluster on the machine, including the heads of tests
running at the same time in other xdist workers; ``ray start --head --block`` in a child
process and a SIGTERM to that child stop this head only.

``env``: variables of the head's environment, which its workers (and so the jobs) inherit:
how a test gives the Ray nodes their own object-store credentials (``AWS_*``), since the
platform sends none in a job's runtime_env.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.ports import free_port

RAY = Path(sys.executable).parent / "ray"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def ray_head(
    name: str,
    *,
    num_cpus: int = 2,
    start_timeout: float = 180,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Start a head (dashboard on a free port) and yield its Job Submission address."""
    dashboard = free_port()
    temp_dir = Path("/tmp") / f"ray-{name}-{os.getpid()}"  # Ray's socket paths must stay short
    env = {
        **os.environ,
        "PATH": f"{RAY.parent}:{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        **(env or {}),
    }
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus", str(num_cpus),
         "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         # every fixed default port too: two heads at once (one per xdist worker) otherwise
         # share 52365 and the second head's job agent never starts ("No available agent")
         "--dashboard-agent-listen-port", str(free_port()),
         "--dashboard-agent-grpc-port", str(free_port()),
         "--metrics-export-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()),
         "--ray-client-server-port", str(free_port()),
         "--include-dashboard", "true", "--disable-usage-stats", "--temp-dir", str(temp_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + start_timeout
        while not _answers(f"{address}/api/version"):
            if head.poll() is not None:
                raise RuntimeError(f"ray start --head exited with {head.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not answer within {start_timeout} s")
            time.sleep(0.5)
        yield address
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
