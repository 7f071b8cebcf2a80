"""/docs and /redoc in headless Chromium (Debian's, driven by playwright-core from tools/node).

One live server; the browser reaches it under a made-up host name (mapped to 127.0.0.1 by
Chromium), as it would a real deployment. tests/docs/browser/docs.cjs records every request
the pages make (outside ones are refused), lists the operations each page shows, authorizes
with an API key in Swagger UI and runs "Try it out" on list-jobs. Screenshots are kept under
test-artifacts/docs/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.job_specs import spec
from tests.conftest import Platform, ServerThread, start_platform
from tests.node_tools import REPO, run_node

SCRIPT = Path(__file__).parent / "browser" / "docs.cjs"
ARTIFACTS = REPO / "test-artifacts" / "docs"
HOST = "docs.ml-platform.test"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def docs_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: object
) -> Iterator[Platform]:
    url = database_url_factory("sqlite")  # type: ignore[operator]
    running: Platform
    server: ServerThread
    running, server = start_platform("sqlite", tmp_path_factory.mktemp("docs"), url)
    yield running
    running.close()
    server.stop()
    running.db.dispose()


@pytest.fixture(scope="module")
def report(docs_platform: Platform) -> dict[str, Any]:
    tenant = docs_platform.new_tenant("docs")
    created = docs_platform.client(tenant).post("/v1/jobs/training", json=spec(name="docs-job"))
    assert created.status_code == 201, created.text
    config = {
        "baseUrl": docs_platform.base_url,
        "host": HOST,
        "apiKey": tenant.api_key,
        "jobId": created.json()["id"],
        "artifacts": str(ARTIFACTS),
    }
    result = run_node(SCRIPT, json.dumps(config), timeout=240)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no report from {SCRIPT.name}:\n{result.stderr[-4000:]}"
    parsed: dict[str, Any] = json.loads(lines[-1])
    assert result.returncode == 0, parsed.get("error", "") + "\n" + result.stderr[-4000:]
    parsed["jobId"] = config["jobId"]
    return parsed


def test_no_request_leaves_the_server(report: dict[str, Any]) -> None:
    assert report["offHost"] == []
    # what the pages asked of other hosts (ReDoc's logo from its CDN) their CSP refused
    assert sorted(report["askedOffHost"]) == sorted(report["refusedByCsp"])
    assert report["pageErrors"] == []
    # the pages really loaded their assets and the spec from the server
    assert any("/docs-assets/swagger-ui-bundle.js" in url for url in report["requests"])
    assert any("/docs-assets/redoc.standalone.js" in url for url in report["requests"])
    assert sum("/openapi.json" in url for url in report["requests"]) == 2


def test_swagger_ui_shows_every_operation(report: dict[str, Any]) -> None:
    expected = sorted(f"{op['method']} {op['route']}" for op in report["spec"])
    assert len(expected) > 30
    assert sorted(report["swagger"]["operations"]) == expected


def test_redoc_shows_every_operation(report: dict[str, Any]) -> None:
    assert sorted(report["redoc"]["operations"]) == sorted(op["id"] for op in report["spec"])


def test_try_it_out_lists_jobs_with_an_api_key(report: dict[str, Any]) -> None:
    tried = report["tryItOut"]
    assert tried["status"] == 200
    assert tried["sentKey"] is True
    assert tried["shownStatus"] == "200"
    shown = json.loads(tried["shownBody"])
    assert [job["id"] for job in shown["jobs"]] == [report["jobId"]]


def test_screenshots_are_kept(report: dict[str, Any]) -> None:
    names = sorted(Path(path).name for path in report["screenshots"])
    assert names == ["docs-try-it-out.png", "docs.png", "redoc.png"]
    for path in report["screenshots"]:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, path
