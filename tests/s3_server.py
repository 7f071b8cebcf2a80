"""A real S3 API for tests: ``moto_server`` on 127.0.0.1, and the fsspec options that reach it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.ports import free_port


@dataclass(frozen=True)
class S3:
    endpoint: str
    options: dict[str, Any]

    def put(self, bucket: str, key: str, data: bytes) -> None:
        httpx.put(f"{self.endpoint}/{bucket}/{key}", content=data, timeout=10).raise_for_status()

    def bucket(self, name: str) -> None:
        httpx.put(f"{self.endpoint}/{name}", timeout=10).raise_for_status()

    def start_recording(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/recorder/reset-recording", timeout=10)
        httpx.post(
            f"{self.endpoint}/moto-api/recorder/start-recording", timeout=10
        ).raise_for_status()

    def recorded(self) -> str:
        """Every request moto served since ``start_recording`` (one JSON line each)."""
        httpx.post(
            f"{self.endpoint}/moto-api/recorder/stop-recording", timeout=10
        ).raise_for_status()
        response = httpx.get(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=10)
        response.raise_for_status()
        return response.text


@contextmanager
def moto_s3(workdir: Path) -> Iterator[S3]:
    """moto_server in ``workdir`` (it writes its request recording into its cwd)."""
    port = free_port()
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert executable, "moto[server] is a dev dependency"
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        yield S3(endpoint, options)
    finally:
        process.terminate()
        process.wait(timeout=10)
