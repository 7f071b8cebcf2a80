"""Who may scrape ``/metrics`` on the serving REST port (its samples name tenants and
deployments): loopback clients only by default; with ``ML_PLATFORM_SERVING_METRICS_TOKEN``,
whoever sends ``Authorization: Bearer <token>``. The workers' ``RestV2App`` on real uvicorn
sockets, on loopback and on this host's non-loopback address (the client address differs)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import cast

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from ml_platform.serving.adapters.rest_v2 import RestV2App
from ml_platform.serving.plane.dataplane import DataPlane

TOKEN = "scrape-" + "t" * 32


def _outside_address() -> str | None:
    """An address of this host that is not loopback (none: the remote cases skip)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
        except OSError:
            return None
        host = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(host).is_loopback else host


class _Server:
    def __init__(self, app: RestV2App, host: str) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _app(token: str | None) -> RestV2App:
    return RestV2App(cast(DataPlane, object()), 1024 * 1024, token)


@pytest.fixture(scope="module")
def outside() -> str:
    host = _outside_address()
    if host is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")
    return host


def _families(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {f.name for f in text_string_to_metric_families(response.text)}


def test_without_a_token_loopback_scrapes_and_others_get_403(outside: str) -> None:
    app = _app(None)
    with _Server(app, "127.0.0.1") as base:
        assert "mlp_serving_predictions" in _families(httpx.get(base + "/metrics"))
    with _Server(app, outside) as base:
        refused = httpx.get(base + "/metrics")
        assert refused.status_code == 403
        problem = refused.json()
        assert problem["code"] == "PERMISSION_DENIED"
        assert "ML_PLATFORM_SERVING_METRICS_TOKEN" in problem["detail"]
        assert "mlp_serving" not in refused.text
        # the data plane's own routes stay open to everyone
        assert httpx.get(base + "/v2/health/live").status_code == 200


def test_with_a_token_every_scraper_needs_it(outside: str) -> None:
    app = _app(TOKEN)
    for host in ("127.0.0.1", outside):
        with _Server(app, host) as base:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                denied = httpx.get(base + "/metrics", headers=headers)
                assert denied.status_code == 401, (host, headers)
                assert denied.json()["code"] == "UNAUTHENTICATED"
                assert TOKEN not in denied.text
            scraped = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert "mlp_serving_predictions" in _families(scraped)
