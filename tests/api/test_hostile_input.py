"""Hostile input at the REST edge: 422 naming the field, never a 5xx, never a dropped connection.

Regression tests for the instances of issue 9 item 7 and item 8's JSON half, on both stores.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from ml_platform.config import Settings
from ml_platform.schemas._types import MAX_TAGS
from ml_platform.server.app import create_app
from tests.api.job_specs import spec
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant

pytestmark = pytest.mark.slow

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


@pytest.mark.parametrize("count", [MAX_TAGS + 1, 70])  # 70: beyond SQLite's 64-table join
def test_a_tag_filter_with_more_tags_than_anything_holds_is_422(
    watched: Watched, count: int
) -> None:
    query = ",".join(f"k{n}=v" for n in range(count))
    for url in ("/v1/jobs/training", "/v2/jobs/training", "/v1/models", "/v2/models"):
        response = watched.client.get(url, params={"tags": query})
        assert_422(response, "query.tags")
        assert f"at most {MAX_TAGS} tags" in response.json()["detail"]
    watched.still_usable()


@pytest.mark.parametrize("suffix", ["", "/logs", "/metrics", "/metrics/history"])
def test_unsafe_job_ids_in_paths_are_422(watched: Watched, suffix: str) -> None:
    for raw in ("%00", "job_%00x", "%1B", "x" * 65):
        response = watched.client.get(f"/v1/jobs/training/{raw}{suffix}")
        assert_422(response, "path.job_id")
    watched.still_usable()


@pytest.mark.parametrize("resume", ["\xb2", "\xb9\xb2", "9" * 40, "-1", "abc"])
def test_odd_last_event_ids_start_the_stream(watched: Watched, resume: str) -> None:
    job = watched.send("POST", "/v1/jobs/training", spec())
    assert job.status_code == 201, job.text
    headers = {"Last-Event-ID": resume.encode("latin-1")}
    url = f"/v1/jobs/training/{job.json()['id']}/logs"
    with watched.client.stream("GET", url, params={"follow": "true"}, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")


DEEP = [b"[" * 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000]


@pytest.mark.parametrize("raw", DEEP, ids=["arrays", "objects"])
def test_json_nested_deeper_than_the_parser_is_4xx(watched: Watched, raw: bytes) -> None:
    name = _model(watched)
    for url in ("/v1/models", f"/v1/models/{name}/versions", "/v1/jobs/training"):
        response = watched.client.post(
            url, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), (url, response.text)
    response = watched.client.post(
        f"/v1/models/{name}/versions",
        files={"file": ("model.joblib", b"not a model")},
        data={"metadata": DEEP[0].decode()},
    )
    assert_422(response, "metadata")
    nested = "[" * 40 + "]" * 40  # parseable, but deeper than free-form fields may be
    body = f'{{"artifact_uri": "/x/m.joblib", "metadata": {{"a": {nested}}}}}'
    assert_422(_raw(watched, "POST", f"/v1/models/{name}/versions", body), "body.metadata")
    watched.still_usable()


@pytest.mark.parametrize("raw", ["%00", "%1B", "x" * 300, "%C3%A9" * 100])
def test_hostile_job_ids_on_the_websocket_close_4404(
    platform: Platform, tenant: Tenant, raw: str
) -> None:
    url = platform.base_url.replace("http://", "ws://") + f"/v1/jobs/training/{raw}/stream"
    with (
        ws_connect(url, additional_headers={"X-API-Key": tenant.api_key}) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404
    assert len(closed.value.rcvd.reason.encode()) <= 123


@pytest.mark.parametrize("raw", ["%00", "%1B", "%C3%A9"])
def test_an_idempotency_key_on_an_odd_path_is_not_a_5xx(watched: Watched, raw: str) -> None:
    for attempt in range(2):  # the claim is stored, then found again
        response = watched.send(
            "POST",
            f"/v1/models/{raw}/versions",
            {"artifact_uri": "/x/m.joblib"},
            headers={"Idempotency-Key": f"k-{raw}"},
        )
        assert response.status_code in (404, 422), (attempt, response.text)
    watched.still_usable()


def test_every_schema_reference_of_the_document_resolves() -> None:
    text = json.dumps(_document())
    names = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert names <= set(_document()["components"]["schemas"]), "dangling $ref"


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


# -- every REST route, generated hostile values (issue 9, Done when) ------------------------

_OPERATIONS_DOC: dict[str, Any] | None = None


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, rendered from the code (not the committed file)."""
    global _OPERATIONS_DOC
    if _OPERATIONS_DOC is None:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/spec.db")
            _OPERATIONS_DOC = create_app(settings).openapi()
    return _OPERATIONS_DOC


def _operations() -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in _document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "\udfff",
    "\ud800x",
    "\x1b[31m",
    "\u202eevil",
    "\U0001d54f",
    "",
    " ",
    "../../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "null",
    "NaN",
    "Infinity",
    "-1",
    "0",
    "1e309",
    str(2**31),
    str(2**63),
    str(2**70),
    str(-(2**63) - 1),
    "1.5",
    "true",
    "job_" + "0" * 26,
    "sha256:" + "0" * 64,
    "x" * 5000,
]
HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    2**31,
    2**31 - 1,
    2**40,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**70,
    -(2**70),
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -0.0,
    5e-324,
    1.5,
]
BIG = "x" * 100_000

hostile_text = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=20)
hostile_scalar = (
    hostile_text
    | st.sampled_from(HOSTILE_NUMBERS)
    | st.sampled_from([None, True, False, BIG, "\x00" * 1000])
    | st.integers()
    | st.floats()
)
hostile_value = st.recursive(
    hostile_scalar,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=6,
)
header_text = (
    st.sampled_from(['"', "*", "W/", "x" * 4000, "é", "\xb2", "9" * 40, "", "abc"])
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    | st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=5)  # obs-text
)


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a (possibly nullable, ``anyOf``) schema admits."""
    schema = _resolve(schema)
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for option in schema.get("anyOf", []):
        found |= _types(option)
    if "enum" in schema:
        found.add("string")
    return found


@st.composite
def typed_hostile(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """Mostly hostile values of the field's own type (they pass the type check and reach the
    bounds, the store and the encoders), sometimes any hostile value."""
    kinds = _types(schema)
    options: list[st.SearchStrategy[Any]] = []
    if kinds & {"integer", "number"}:
        options.append(st.sampled_from(HOSTILE_NUMBERS))
    if "string" in kinds:
        options.append(hostile_text | st.just(BIG))
    if "object" in kinds:
        options.append(st.dictionaries(hostile_text, hostile_value, min_size=1, max_size=3))
    if "array" in kinds:
        options.append(st.lists(hostile_value, min_size=1, max_size=3))
    if options and draw(st.integers(0, 3)) > 0:
        return draw(st.one_of(*options))
    return draw(hostile_value)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = _document()["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _quote(value: str) -> str:
    """Percent-encode any text for a URL, lone surrogates included (as their raw bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass
class Fixtures:
    """Real resources of one tenant, so hostile values also reach past the lookups."""

    tenant: Tenant
    model: str
    deployment: str
    job_id: str

    def realistic(self, path: str, param: str) -> list[str]:
        if param == "name":
            return [self.deployment] if path.startswith("/v1/deployments") else [self.model]
        return {
            "version": ["1", "latest", "production"],
            "alias": ["staging", "production", "latest"],
            "job_id": [self.job_id],
            "package_id": ["sha256:" + "0" * 64],
            "path": ["train.csv", "churn/train.csv"],
        }.get(param, ["x"])

    def body(self, method: str, path: str, salt: int) -> dict[str, Any] | None:
        """A body that would succeed, where the schema's example names nothing real."""
        if (method, path) == ("post", "/v1/deployments"):
            return {"name": f"d-{salt}", "model": self.model}
        if (method, path) == ("patch", "/v1/deployments/{name}"):
            return {"version": 1}
        if (method, path) == ("put", "/v1/models/{name}/aliases/{alias}"):
            return {"version": 1}
        if (method, path) == ("post", "/v1/models"):
            return {"name": f"m-{salt}", "framework": "sklearn"}
        if (method, path) == ("post", "/v1/jobs/training"):
            return spec()
        return None


@pytest.fixture
def fixtures(platform: Platform) -> Fixtures:
    tenant = platform.new_tenant("hostile")
    with platform.client(tenant) as client:
        model = f"m-{secrets.token_hex(4)}"
        assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
        add_version_row(platform, tenant, model)
        alias = client.put(f"/v1/models/{model}/aliases/production", json={"version": 1})
        assert alias.is_success, alias.text
        deployment = f"d-{secrets.token_hex(4)}"
        created = client.post("/v1/deployments", json={"name": deployment, "model": model})
        assert created.is_success, created.text
        job = client.post("/v1/jobs/training", json=spec())
        assert job.is_success, job.text
    return Fixtures(tenant, model, deployment, job.json()["id"])


def _example(schema: dict[str, Any]) -> dict[str, Any]:
    example = schema.get("example")
    if example is None and schema.get("examples"):
        example = schema["examples"][0]
    return copy.deepcopy(example) if isinstance(example, dict) else {}


@st.composite
def json_bodies(draw: st.DrawFn, schema: dict[str, Any], base: dict[str, Any] | None) -> Any:
    """A valid body (``base`` or the schema's example) with 1..3 fields made hostile, or junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_value)
    body = copy.deepcopy(base) if base is not None else _example(schema)
    properties: dict[str, Any] = schema.get("properties", {})
    names = [*sorted(properties), "not_a_field"]
    for field in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        nested = _resolve(properties.get(field, {}))
        if nested.get("properties") and draw(st.booleans()):
            inner = body.get(field) if isinstance(body.get(field), dict) else _example(nested)
            key = draw(st.sampled_from([*sorted(nested["properties"]), "not_a_field"]))
            inner[key] = draw(typed_hostile(nested["properties"].get(key, {})))
            body[field] = inner
        else:
            body[field] = draw(typed_hostile(properties.get(field, {})))
    return body


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None


@st.composite
def calls(draw: st.DrawFn, method: str, path: str, fixtures: Fixtures) -> Call:
    operation = _document()["paths"][path][method]
    url = path
    query: list[str] = []
    headers: dict[str, str] = {}
    parameters = operation.get("parameters", [])
    path_params = [p["name"] for p in parameters if p["in"] == "path"]
    # at most one path parameter is hostile, and half the time none: the others name real
    # resources so that hostile queries and bodies reach past the lookups
    hostile_path = draw(st.sampled_from([None, None, *path_params])) if path_params else None
    for param in parameters:
        where, name = param["in"], param["name"]
        realistic = fixtures.realistic(path, name)
        if where == "path":
            value = draw(hostile_text if name == hostile_path else st.sampled_from(realistic))
            url = url.replace("{" + name + "}", _quote(value) or "x")
        elif where == "query" and draw(st.booleans()):
            numbers = [str(n) for n in HOSTILE_NUMBERS]
            typed = (
                st.sampled_from(numbers)
                if _types(param.get("schema", {})) & {"integer", "number"}
                else hostile_text
            )
            value = draw(typed | hostile_text | st.sampled_from(["1", "50", "sklearn", "a=b"]))
            if name == "follow":
                value = draw(st.sampled_from(["false", "0", "maybe", "\x00", "2"]))
            query.append(f"{_quote(name)}={_quote(value)}")
        elif where == "header" and draw(st.booleans()):
            headers[name] = draw(header_text).strip(" \t").encode("latin-1")  # type: ignore[assignment]
    if query:
        url += "?" + "&".join(query)
    if method == "post" and draw(st.integers(0, 3)) == 0:  # API-GUIDE rule 12, every POST
        key = draw(header_text | st.sampled_from(["k-1", "k-1", "x" * 256]))
        headers["Idempotency-Key"] = key.strip(" \t").encode("latin-1")  # type: ignore[assignment]
    content_types = operation.get("requestBody", {}).get("content", {})
    if not content_types and method in {"post", "put", "patch"}:
        content_types = {"application/octet-stream": {}}
    if not content_types:
        return Call(method.upper(), url, headers)
    kind = draw(st.sampled_from(sorted(content_types)))
    if kind == "multipart/form-data":
        fields = {
            name: draw(hostile_text | st.sampled_from(['{"a": NaN}', '{"a": "\\u0000"}', "[]"]))
            for name in draw(
                st.lists(
                    st.sampled_from(["format", "signature", "metadata", "description", "x"]),
                    max_size=3,
                    unique=True,
                )
            )
        }
        data = {
            k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            for k, v in fields.items()
        }
        return Call(method.upper(), url, headers, files={"file": ("m.joblib", b"junk")}, data=data)
    if kind == "application/json":
        base = fixtures.body(method, path, draw(st.integers(0, 10**9)))
        body = draw(json_bodies(_resolve(content_types[kind]["schema"]), base))
        raw = json.dumps(body, allow_nan=True).encode()
        if draw(st.integers(0, 19)) == 0:
            raw = draw(st.sampled_from(DEEP))
        media = draw(st.sampled_from(["application/json", "application/json", "text/plain"]))
        return Call(method.upper(), url, {**headers, "content-type": media}, content=raw)
    blob = draw(
        st.binary(max_size=256) | st.sampled_from([b"", b"\x00" * 64, b"\x1f\x8b" + b"x" * 100])
    )
    return Call(method.upper(), url, {**headers, "content-type": kind}, content=blob)


HOSTILE_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_route_survives_hostile_values(
    platform: Platform, fixtures: Fixtures, method: str, path: str
) -> None:
    peers: list[object] = []

    def remember(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        peers.append(stream.get_extra_info("socket").getsockname())

    with httpx.Client(
        base_url=platform.base_url,
        headers={"X-API-Key": fixtures.tenant.api_key},
        timeout=30,
        event_hooks={"response": [remember]},
    ) as client:

        @HOSTILE_SETTINGS
        @given(call=calls(method, path, fixtures))
        def run(call: Call) -> None:
            peers.clear()
            request = client.build_request(
                call.method,
                call.url,
                headers=call.headers,
                content=call.content,
                files=call.files,
                data=call.data,
            )
            response = client.send(request, stream=True)
            try:
                streaming = response.headers.get("content-type", "").startswith("text/event-stream")
                if not streaming:
                    response.read()
            finally:
                response.close()
            assert response.status_code < 500, (call, response.text if not streaming else "")
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", call
                assert response.json()["status"] == response.status_code
            assert "connection" not in response.headers or (
                response.headers["connection"].lower() != "close"
            ), call
            probe = client.get("/healthz")
            assert probe.status_code == 200
            if not streaming:  # an unread event stream is closed by the client, not the server
                assert peers[0] == peers[-1], ("the connection was dropped", call)

        run()
