"""How the API serves the dashboard: the app at /ui with its client routes, a strict CSP, no
file outside the build, and the same-origin V2 REST door answering a problem (never a 500)
when no serving plane is running."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from ml_platform.api.ui import content_security_policy, serving_rest_url
from ml_platform.server.app import create_app
from ml_platform.ui import STATIC_DIR
from tests.conftest import Platform, ServerThread, Tenant
from tests.ports import free_port


@pytest.fixture(scope="module")
def no_serving(platform: Platform) -> Iterator[str]:
    """The platform's API with its V2 REST door pointed at a port where nothing listens."""
    settings = platform.settings.model_copy(update={"serving_rest_port": free_port()})
    context = dataclasses.replace(platform.context, settings=settings, engine=None)
    server = ServerThread(create_app(settings, context))
    base_url = server.start()
    yield base_url
    server.stop()


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/jobs", "/ui/jobs/job_123", "/ui/models/a"])
def test_every_client_route_answers_the_app_with_a_strict_csp(
    platform: Platform, path: str
) -> None:
    response = httpx.get(f"{platform.base_url}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (STATIC_DIR / "index.html").read_text()
    host = platform.base_url.removeprefix("http://")
    csp = response.headers["content-security-policy"]
    assert csp == content_security_policy(host)
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert f"connect-src 'self' ws://{host} wss://{host};" in csp
    assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_assets_are_served_and_missing_ones_are_problems(platform: Platform) -> None:
    script = httpx.get(f"{platform.base_url}/ui/assets/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.content == (STATIC_DIR / "assets" / "app.js").read_bytes()
    assert "content-security-policy" in script.headers and "etag" in script.headers
    missing = httpx.get(f"{platform.base_url}/ui/assets/nope.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "path",
    ["/ui/..%2f..%2fconfig.py", "/ui/%2e%2e/%2e%2e/api/ui.py", "/ui/assets/..%2f..%2f__init__.py"],
)
def test_no_file_outside_the_build_is_served(platform: Platform, path: str) -> None:
    response = httpx.get(f"{platform.base_url}{path}")
    assert response.status_code in (200, 404)
    assert "from __future__" not in response.text  # never a source file


def test_a_hostile_host_header_stays_out_of_the_csp() -> None:
    assert "ws:" not in content_security_policy("evil.example; script-src *")
    assert "ws://[::1]:8000" in content_security_policy("[::1]:8000")
    assert "ws:" not in content_security_policy(None)


def test_the_v2_rest_door_dials_this_install_s_serving_plane(platform: Platform) -> None:
    settings = platform.settings
    assert serving_rest_url(settings.model_copy(update={"grpc_host": "0.0.0.0"})) == (
        f"http://127.0.0.1:{settings.serving_rest_port}"
    )
    assert serving_rest_url(settings.model_copy(update={"grpc_host": "::1"})).startswith(
        "http://[::1]:"
    )


def test_inference_without_a_serving_plane_is_a_503_problem(
    no_serving: str, tenant: Tenant
) -> None:
    response = httpx.post(
        f"{no_serving}/v2/models/churn/infer",
        json={"inputs": []},
        headers={"X-API-Key": tenant.api_key},
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "UNAVAILABLE" and "mlp server" in problem["detail"]
    assert "127.0.0.1" not in response.text  # the internal address is logged, not answered
