"""V2 REST request ids: accepted when safe, else replaced, generated when absent, on every
response; and every log line of the request names it (the serving workers' ``RestV2App`` on a
real uvicorn socket; its data plane is a double that fails, so the adapter logs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from ml_platform.logs_format import JsonFormatter, RequestIdFilter
from ml_platform.serving.adapters.rest_v2 import RestV2App
from ml_platform.serving.plane.dataplane import DataPlane
from tests.conftest import ServerThread


class _FailingPlane:
    """Only what the routes below touch: authentication fails unexpectedly."""

    async def authenticate(self, api_key: str | None, bearer: str | None) -> Any:
        logging.getLogger("ml_platform.serving.test").warning("authenticating a V2 call")
        raise RuntimeError("backend exploded")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture(scope="module")
def v2() -> Iterator[tuple[str, _Collect]]:
    handler = _Collect()
    root = logging.getLogger("ml_platform.serving")
    root.addHandler(handler)
    server = ServerThread(RestV2App(cast(DataPlane, _FailingPlane()), 1024 * 1024))
    try:
        yield server.start(), handler
    finally:
        server.stop()
        root.removeHandler(handler)


def test_a_safe_request_id_is_echoed(v2: tuple[str, _Collect]) -> None:
    base, _ = v2
    answer = httpx.get(base + "/v2/health/live", headers={"X-Request-ID": "trace-v2-live-1"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "trace-v2-live-1"


@pytest.mark.parametrize("forged", ["x" * 129, "has space", "<b>", "-dash", "semi;colon"])
def test_an_unsafe_request_id_is_replaced(v2: tuple[str, _Collect], forged: str) -> None:
    base, _ = v2
    for path in ("/v2/health/live", "/v2/no-such-route"):
        answer = httpx.get(base + path, headers={"X-Request-ID": forged})
        given = answer.headers["x-request-id"]
        assert given != forged and given.startswith("req_") and len(given) == 28
        if answer.status_code == 404:
            assert answer.json()["request_id"] == given
            assert forged not in answer.text


def test_a_request_id_is_generated_when_absent(v2: tuple[str, _Collect]) -> None:
    base, _ = v2
    first = httpx.get(base + "/v2/health/live").headers["x-request-id"]
    second = httpx.get(base + "/v2/health/live").headers["x-request-id"]
    assert first.startswith("req_") and second.startswith("req_") and first != second


def test_every_log_line_of_a_v2_request_names_it(v2: tuple[str, _Collect]) -> None:
    base, handler = v2
    before = len(handler.lines)
    answer = httpx.get(
        base + "/v2/models/m/ready",
        headers={"X-Request-ID": "trace-v2-fail-1", "X-API-Key": "mlp_secret_never_logged"},
    )
    assert answer.status_code == 500
    assert answer.json()["request_id"] == "trace-v2-fail-1" == answer.headers["x-request-id"]
    lines = handler.lines[before:]
    assert [line["logger"] for line in lines] == [
        "ml_platform.serving.test",
        "ml_platform.serving.adapters.rest_v2",
    ]
    assert {line["request_id"] for line in lines} == {"trace-v2-fail-1"}
    assert "RuntimeError: backend exploded" in lines[1]["exc_info"]
    assert "mlp_secret_never_logged" not in json.dumps(lines)
    # the next request has its own id, and none leaks outside a request
    httpx.get(base + "/v2/health/live", headers={"X-Request-ID": "trace-v2-after"})
    logging.getLogger("ml_platform.serving.test").warning("between requests")
    assert handler.lines[-1]["request_id"] is None
