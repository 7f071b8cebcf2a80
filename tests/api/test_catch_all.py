"""The catch-all answers a 500 problem with no traceback and keeps the keep-alive connection."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from ml_platform.api.middleware import RequestContextMiddleware
from ml_platform.api.problems import install_problem_handlers
from tests.conftest import ServerThread


@pytest.fixture
def base_url() -> Iterator[str]:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware, max_body_bytes=4096)
    install_problem_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /srv/data")

    @app.get("/ok")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    server = ServerThread(app)
    yield server.start()
    server.stop()


def test_unexpected_error_is_a_safe_500_on_the_same_connection(base_url: str) -> None:
    peers: set[object] = set()

    def remember(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        peers.add(stream.get_extra_info("socket").getsockname())

    with httpx.Client(base_url=base_url, event_hooks={"response": [remember]}) as client:
        for _ in range(2):
            response = client.get("/boom")
            assert response.status_code == 500
            body = response.json()
            assert body["code"] == "INTERNAL"
            assert body["status"] == 500
            assert body["request_id"] == response.headers["x-request-id"]
            assert "secret" not in response.text and "Traceback" not in response.text
        assert client.get("/ok").json() == {"ok": True}
    assert len(peers) == 1, "the 500 closed the keep-alive connection"
