"""Hostile input at the REST edge: 422 naming the field, never a 5xx, never a dropped connection.

Regression tests for the instances of issue 9 item 7 and item 8's JSON half, on both stores.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest

from tests.api.job_specs import spec
from tests.conftest import Platform, Tenant

HUGE_PG = 2**40  # beyond PostgreSQL INTEGER
HUGE = 2**70  # beyond every 64-bit column (SQLite too)


class Watched:
    """A client that records the local socket of every response (to see reconnects)."""

    def __init__(self, platform: Platform, tenant: Tenant) -> None:
        self.peers: set[object] = set()
        self.client = httpx.Client(
            base_url=platform.base_url,
            headers={"X-API-Key": tenant.api_key},
            timeout=30,
            event_hooks={"response": [self._remember]},
        )

    def _remember(self, response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        self.peers.add(stream.get_extra_info("socket").getsockname())

    def send(self, method: str, url: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            # json.dumps escapes lone surrogates (httpx's encoder would refuse them).
            kwargs["content"] = json.dumps(body).encode()
            kwargs.setdefault("headers", {})["content-type"] = "application/json"
        return self.client.request(method, url, **kwargs)

    def still_usable(self) -> None:
        assert self.client.get("/v1/models").status_code == 200
        assert len(self.peers) == 1, "an error response closed the keep-alive connection"

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def watched(platform: Platform, tenant: Tenant) -> Any:
    client = Watched(platform, tenant)
    yield client
    client.close()


def _model(watched: Watched) -> str:
    name = f"m-{secrets.token_hex(4)}"
    created = watched.send("POST", "/v1/models", {"name": name, "framework": "sklearn"})
    assert created.status_code == 201, created.text
    return name


def assert_422(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    paths = [error["path"] for error in response.json()["errors"]]
    assert any(path == field or path.startswith(field + ".") for path in paths), (field, paths)


@pytest.mark.parametrize("version", [HUGE_PG, HUGE])
def test_alias_version_beyond_the_column_is_422(watched: Watched, version: int) -> None:
    name = _model(watched)
    response = watched.send("PUT", f"/v1/models/{name}/aliases/production", {"version": version})
    assert_422(response, "body.version")
    watched.still_usable()


@pytest.mark.parametrize("version", [HUGE_PG, HUGE])
def test_deployment_version_beyond_the_column_is_422(watched: Watched, version: int) -> None:
    name = _model(watched)
    body = {"name": f"d-{secrets.token_hex(4)}", "model": name, "version": version}
    assert_422(watched.send("POST", "/v1/deployments", body), "body.version")
    assert_422(
        watched.send("PATCH", f"/v1/deployments/{body['name']}", {"version": version}),
        "body.version",
    )
    watched.still_usable()


def test_metric_history_after_id_beyond_int64_is_422(watched: Watched) -> None:
    job = watched.send("POST", "/v1/jobs/training", spec())
    assert job.status_code == 201, job.text
    url = f"/v1/jobs/training/{job.json()['id']}/metrics/history"
    assert watched.send("GET", url, params={"after_id": 2**63 - 1}).status_code == 200
    assert_422(watched.send("GET", url, params={"after_id": HUGE}), "query.after_id")
    watched.still_usable()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"description": "a\x00b"}, "body.description"),
        ({"tags": {"team": "a\x00b"}}, "body.tags"),
        ({"tags": {"te\x00am": "x"}}, "body.tags"),
        ({"description": "\udfff"}, "body.description"),
        ({"tags": {"team": "\ud800"}}, "body.tags"),
        ({"description": "bell\x07"}, "body.description"),
    ],
)
def test_unsafe_text_in_a_model_is_422(watched: Watched, body: dict[str, Any], field: str) -> None:
    name = f"m-{secrets.token_hex(4)}"
    assert_422(
        watched.send("POST", "/v1/models", {"name": name, "framework": "sklearn", **body}), field
    )
    existing = _model(watched)
    assert_422(watched.send("PATCH", f"/v1/models/{existing}", body), field)
    watched.still_usable()


@pytest.mark.parametrize(
    "metadata",
    [{"note": "a\x00b"}, {"k\x00": 1}, {"nested": [{"x": "\udfff"}]}, {"n": HUGE}],
)
def test_unsafe_version_metadata_is_422(watched: Watched, metadata: dict[str, Any]) -> None:
    name = _model(watched)
    body = {"artifact_uri": "/nonexistent/model.joblib", "metadata": metadata}
    assert_422(watched.send("POST", f"/v1/models/{name}/versions", body), "body.metadata")
    watched.still_usable()


def test_unsafe_multipart_metadata_is_422(watched: Watched) -> None:
    name = _model(watched)
    response = watched.client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("model.joblib", b"not a model")},
        data={"metadata": json.dumps({"note": "a\x00b"}), "description": "ok"},
    )
    assert_422(response, "metadata")
    response = watched.client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("model.joblib", b"not a model")},
        data={"metadata": '{"loss": NaN}'},
    )
    assert_422(response, "metadata")
    watched.still_usable()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"tags": {"team": "\udfff"}}, "body.tags"),
        ({"tags": {"\udfff": "x"}}, "body.tags"),
        ({"description_is_not_a_field": 1}, "body.description_is_not_a_field"),
        ({"data_path": "data/\x00.csv"}, "body.data_path"),
        ({"entrypoint": "python \udc80.py"}, "body.entrypoint"),
        ({"env_vars": {"A": "x\x00"}}, "body.env_vars"),
        ({"hyperparameters": {"lr": "\udfff"}}, "body.hyperparameters"),
        ({"compute": {"gpu_type": "a\x00"}}, "body.compute.gpu_type"),
    ],
)
def test_unsafe_text_in_a_job_is_422(watched: Watched, changes: dict[str, Any], field: str) -> None:
    assert_422(watched.send("POST", "/v1/jobs/training", spec(**changes)), field)
    watched.still_usable()


@pytest.mark.parametrize("query", ["team=\x1b[31m", "te\x00am=x"])
def test_unsafe_tag_filters_are_422(watched: Watched, query: str) -> None:
    for url in ("/v1/jobs/training", "/v1/models"):
        response = watched.client.get(url, params={"tags": query})
        assert_422(response, "query.tags")
        # a surrogate cannot travel in a URL: its UTF-8-like bytes are not valid UTF-8
        assert watched.client.get(f"{url}?tags=team%3D%ED%BF%BF").status_code < 500
    watched.still_usable()


# -- NaN and Infinity (item 8, JSON half) ---------------------------------------------------


def _raw(watched: Watched, method: str, url: str, text: str) -> httpx.Response:
    return watched.client.request(
        method, url, content=text.encode(), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_hyperparameters_is_refused_not_stored(watched: Watched, constant: str) -> None:
    body = json.dumps(spec()).replace('"name"', f'"hyperparameters": {{"lr": {constant}}}, "name"')
    response = _raw(watched, "POST", "/v1/jobs/training", body)
    assert_422(response, "body.hyperparameters")
    nested = json.dumps(spec()).replace(
        '"name"', f'"hyperparameters": {{"grid": [1, {{"x": {constant}}}]}}, "name"'
    )
    assert_422(_raw(watched, "POST", "/v1/jobs/training", nested), "body.hyperparameters")
    assert watched.client.get("/v1/jobs/training").json()["total"] == 0
    watched.still_usable()


@pytest.mark.parametrize("constant", ["NaN", "Infinity"])
def test_nan_in_version_metadata_and_floats_is_422(watched: Watched, constant: str) -> None:
    name = _model(watched)
    body = f'{{"artifact_uri": "/nonexistent/m.joblib", "metadata": {{"auc": {constant}}}}}'
    assert_422(_raw(watched, "POST", f"/v1/models/{name}/versions", body), "body.metadata")
    deployment = (
        f'{{"name": "d-{secrets.token_hex(3)}", "model": "{name}", '
        f'"max_batch_delay_ms": {constant}}}'
    )
    assert_422(_raw(watched, "POST", "/v1/deployments", deployment), "body.max_batch_delay_ms")
    watched.still_usable()
