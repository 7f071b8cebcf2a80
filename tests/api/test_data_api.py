"""The tenant data area over a live server: PUT/GET/DELETE /v1/data/{path} and GET /v1/data.

Real server on loopback, real files. Hostile paths are sent with ``http.client`` so that the
request target reaches the server byte for byte (httpx would normalise ``..`` away).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import io
import json
import os
import secrets
import socket
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ml_platform.client import AsyncClient, Client
from tests.api.job_specs import spec
from tests.conftest import BACKENDS, Platform, Tenant, start_platform

pytestmark = pytest.mark.slow

SMALL_LIMIT = 64 * 1024


def _root(platform: Platform, tenant: Tenant) -> Path:
    engine = platform.context.engine
    assert engine is not None
    return engine.paths.tenant_root(tenant.id)


def _area(platform: Platform, tenant: Tenant) -> Path:
    return _root(platform, tenant) / "data"


def _raw(
    platform: Platform,
    tenant: Tenant,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request with ``target`` sent exactly as given."""
    url = urlsplit(platform.base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        all_headers = {"X-API-Key": tenant.api_key, **(headers or {})}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/octet-stream")
        conn.request(method, target, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _put(client: httpx.Client, path: str, content: Any) -> httpx.Response:
    return client.put(
        "/v1/data/" + quote(path, safe="/"),
        content=content,
        headers={"Content-Type": "application/octet-stream"},
    )


# -- upload, replace, download, delete ----------------------------------------------------------


def test_upload_download_replace_delete(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    body = b"f0,f1,label\n0.1,0.2,1\n"
    created = _put(client, "churn/train.csv", body)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["path"] == "data/churn/train.csv"
    assert doc["size_bytes"] == len(body)
    assert doc["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["modified_at"].endswith(("Z", "+00:00"))
    assert created.headers["location"] == "/v1/data/churn/train.csv"
    on_disk = _area(platform, tenant) / "churn" / "train.csv"
    assert on_disk.read_bytes() == body
    assert str(platform.settings.data_dir) not in created.text

    got = client.get("/v1/data/churn/train.csv")
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == f'"{doc["sha256"]}"'

    replaced = _put(client, "churn/train.csv", b"new")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["size_bytes"] == 3
    assert client.get("/v1/data/churn/train.csv").content == b"new"
    # nothing but the file itself is left in its directory (no temporary files)
    assert sorted(p.name for p in on_disk.parent.iterdir()) == ["train.csv"]

    assert client.delete("/v1/data/churn/train.csv").status_code == 204
    missing = client.get("/v1/data/churn/train.csv")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "NOT_FOUND"
    assert "data/churn/train.csv" in missing.json()["detail"]
    assert not on_disk.parent.exists()  # the directory it left empty went with it
    assert client.delete("/v1/data/churn/train.csv").status_code == 404


def test_zero_byte_upload(platform: Platform, tenant: Tenant, client: httpx.Client) -> None:
    response = _put(client, "empty.txt", b"")
    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == 0
    assert response.json()["sha256"] == hashlib.sha256(b"").hexdigest()
    assert (_area(platform, tenant) / "empty.txt").read_bytes() == b""
    got = client.get("/v1/data/empty.txt")
    assert got.status_code == 200 and got.content == b""


def test_multi_mib_upload_streams_chunked_and_with_length(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    payload = os.urandom(6 * 1024 * 1024 + 17)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    streamed = _put(client, "big/streamed.bin", chunks())
    assert streamed.status_code == 201, streamed.text
    assert streamed.json()["size_bytes"] == len(payload)
    assert streamed.json()["sha256"] == hashlib.sha256(payload).hexdigest()
    sized = _put(client, "big/sized.bin", payload)  # well over the 1 MiB JSON body limit
    assert sized.status_code == 201, sized.text
    for name in ("streamed.bin", "sized.bin"):
        with client.stream("GET", f"/v1/data/big/{name}") as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == len(payload)
            assert b"".join(response.iter_bytes()) == payload


def test_multipart_body_is_415(client: httpx.Client) -> None:
    response = client.put("/v1/data/x.csv", files={"file": ("x.csv", b"a,b\n")})
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_directory_conflicts(platform: Platform, tenant: Tenant, client: httpx.Client) -> None:
    assert _put(client, "dir/a.csv", b"a").status_code == 201
    # a directory cannot be deleted as a whole, nor overwritten by a file
    deleted = client.delete("/v1/data/dir")
    assert deleted.status_code == 409, deleted.text
    assert "directory" in deleted.json()["detail"]
    assert _put(client, "dir", b"x").status_code == 409
    # a file cannot be used as a directory
    assert _put(client, "dir/a.csv/b.csv", b"x").status_code == 409
    assert (_area(platform, tenant) / "dir" / "a.csv").read_bytes() == b"a"
    assert sorted(p.name for p in (_area(platform, tenant) / "dir").iterdir()) == ["a.csv"]
    # reading a directory is 404, not its listing
    assert client.get("/v1/data/dir").status_code == 404


# -- listing --------------------------------------------------------------------------------------


def test_list_pages_in_path_order_with_prefix(client: httpx.Client) -> None:
    names = [f"set/{i:02d}.csv" for i in range(23)] + ["other/z.csv", "set-b.csv"]
    for name in reversed(names):
        assert _put(client, name, name.encode()).status_code == 201

    seen: list[str] = []
    page = 1
    while True:
        body = client.get("/v1/data", params={"page": page, "page_size": 7}).json()
        assert body["total"] == len(names)
        assert body["page"] == page and body["page_size"] == 7
        seen += [f["path"] for f in body["files"]]
        if not body["has_more"]:
            break
        page += 1
    assert seen == sorted(f"data/{n}" for n in names)  # no duplicate, no gap, by path

    only_set = client.get("/v1/data", params={"prefix": "set/", "page_size": 500}).json()
    assert [f["path"] for f in only_set["files"]] == [f"data/set/{i:02d}.csv" for i in range(23)]
    starts = client.get("/v1/data", params={"prefix": "set"}).json()
    assert starts["total"] == 24  # set/... and set-b.csv
    first = only_set["files"][0]
    assert first["sha256"] == hashlib.sha256(b"set/00.csv").hexdigest()
    assert first["size_bytes"] == len(b"set/00.csv")
    assert client.get("/v1/data", params={"prefix": "nothing/"}).json()["total"] == 0
    bad = client.get("/v1/data", params={"prefix": "../"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "prefix"
    assert client.get("/v1/data", params={"page_size": 501}).status_code == 422


def test_list_of_a_new_tenant_is_empty(client: httpx.Client) -> None:
    body = client.get("/v1/data").json()
    assert body == {"files": [], "page": 1, "page_size": 50, "total": 0, "has_more": False}


def test_listing_notices_a_file_changed_behind_its_back(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    assert _put(client, "changed.csv", b"before").status_code == 201
    (_area(platform, tenant) / "changed.csv").write_bytes(b"after, by a job")
    listed = client.get("/v1/data").json()["files"][0]
    assert listed["sha256"] == hashlib.sha256(b"after, by a job").hexdigest()


# -- limits -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def small_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url_factory: Any,
) -> Iterator[Platform]:
    backend: str = request.param
    running, server = start_platform(
        backend,
        tmp_path_factory.mktemp(f"data-small-{backend}"),
        database_url_factory(backend),
        max_data_upload_bytes=SMALL_LIMIT,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def test_over_the_limit_is_413_and_leaves_nothing(small_platform: Platform) -> None:
    tenant = small_platform.new_tenant()
    client = small_platform.client(tenant)
    at_limit = _put(client, "ok.bin", b"x" * SMALL_LIMIT)
    assert at_limit.status_code == 201, at_limit.text

    declared = _put(client, "big.bin", b"x" * (SMALL_LIMIT + 1))  # refused from Content-Length
    assert declared.status_code == 413, declared.text
    assert declared.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "ML_PLATFORM_MAX_DATA_UPLOAD_BYTES" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        yield b"y" * (SMALL_LIMIT // 2)
        yield b"y" * (SMALL_LIMIT // 2 + 1)

    streamed = _put(client, "ok.bin", chunks())
    assert streamed.status_code == 413, streamed.text
    area = _area(small_platform, tenant)
    assert sorted(p.name for p in area.iterdir()) == ["ok.bin"]  # no temp file, no big.bin
    assert (area / "ok.bin").read_bytes() == b"x" * SMALL_LIMIT  # the old file is intact


# -- hostile paths ------------------------------------------------------------------------------


def _snapshot(platform: Platform, tenant: Tenant) -> set[str]:
    """Every path near the platform's data dir, except the tenant's own data area and the DB."""
    base = Path(platform.settings.data_dir).resolve().parent
    own = _area(platform, tenant)
    own.mkdir(parents=True, exist_ok=True)  # an upload into it may create it
    out = set()
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        if here == own or own in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            if "mlp.db" not in name:
                out.add(str(here / name))
    return out


HOSTILE = [
    "../escape.txt",
    "../../escape.txt",
    "a/../../escape.txt",
    "./a.txt",
    "a/./b.txt",
    "a//b.txt",
    "/etc/escape.txt",
    "//escape.txt",
    "a\x00b.txt",
    "a\nb.txt",
    "a\x7fb.txt",
    "a\u202etxt.exe",
    "a\\..\\escape.txt",
    "dir/",
    ".mlp-upload-x",
    "x" * 256,
    "/".join(["d"] * 40),
    "é/" * 600 + "f",
]


def _target(path: str, encode_dots: bool) -> str:
    encoded = quote(path, safe="/")
    if encode_dots:
        encoded = encoded.replace(".", "%2e")
    return "/v1/data/" + encoded


@pytest.mark.parametrize("path", HOSTILE)
@pytest.mark.parametrize("encode_dots", [False, True])
def test_hostile_paths_are_422_naming_path(
    platform: Platform, tenant: Tenant, path: str, encode_dots: bool
) -> None:
    before = _snapshot(platform, tenant)
    status, body = _raw(platform, tenant, "PUT", _target(path, encode_dots), b"evil")
    problem = json.loads(body)
    assert status == 422, (status, body)
    assert problem["errors"][0]["path"] == "path", problem
    assert str(Path(platform.settings.data_dir).resolve()) not in problem["detail"]
    for method in ("GET", "DELETE"):
        status, body = _raw(platform, tenant, method, _target(path, encode_dots))
        assert 400 <= status < 500, (method, status, body)
    assert _snapshot(platform, tenant) == before
    assert not any(_area(platform, tenant).rglob("*"))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    parts=st.lists(
        st.sampled_from(["..", ".", "", "%2e%2e", "%2E.", "..%2f..", "%00", "a", "\u00e9\u4e2d"])
        | st.text(min_size=0, max_size=40),
        min_size=1,
        max_size=8,
    ),
    lead=st.sampled_from(["", "/", "//", "%2f"]),
)
@example(parts=["..", "..", "..", "tmp", "escape"], lead="")
@example(parts=["x" * 300], lead="")
@example(parts=["\n", ""], lead="")  # once a 307: a newline missed the route, the slash redirected
def test_generated_paths_never_500_nor_escape(
    platform: Platform, tenant: Tenant, parts: list[str], lead: str
) -> None:
    before = _snapshot(platform, tenant)
    raw = lead + "/".join(parts)
    target = "/v1/data/" + quote(raw, safe="/%")  # %xx sent as is: the server decodes them
    status, body = _raw(platform, tenant, "PUT", target, b"evil")
    assert status < 500, (raw, status, body)
    assert status in (200, 201, 404, 409, 413, 422), (raw, status, body)  # never a redirect
    if status in (200, 201):
        doc = json.loads(body)
        stored = _area(platform, tenant) / doc["path"].removeprefix("data/")
        assert stored.read_bytes() == b"evil"
        assert _area(platform, tenant) in stored.resolve().parents
    for method in ("GET", "DELETE"):
        status, body = _raw(platform, tenant, method, target)
        assert status < 500, (method, raw, status, body)
    assert _snapshot(platform, tenant) == before


def test_planted_symlinks_are_never_followed(
    platform: Platform, tenant: Tenant, client: httpx.Client, tmp_path: Path
) -> None:
    """A job of the tenant may write symlinks into its area; the API never follows them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(b"not yours")
    assert _put(client, "real.csv", b"r").status_code == 201
    area = _area(platform, tenant)
    (area / "dirlink").symlink_to(outside, target_is_directory=True)
    (area / "filelink").symlink_to(secret)

    put = _put(client, "dirlink/new.txt", b"evil")
    assert put.status_code == 422, put.text
    assert put.json()["errors"][0]["path"] == "path"
    assert str(outside) not in put.text
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert client.get("/v1/data/dirlink/secret.txt").status_code == 404
    assert client.get("/v1/data/filelink").status_code == 404
    assert client.delete("/v1/data/dirlink/secret.txt").status_code == 404
    assert client.delete("/v1/data/filelink").status_code == 404
    listed = [f["path"] for f in client.get("/v1/data").json()["files"]]
    assert listed == ["data/real.csv"]

    # writing over a link replaces the link itself; its target is untouched
    assert _put(client, "filelink", b"mine").status_code == 200
    assert secret.read_bytes() == b"not yours"
    assert not (area / "filelink").is_symlink()
    assert (area / "filelink").read_bytes() == b"mine"


# -- tenants ------------------------------------------------------------------------------------


def test_tenants_cannot_see_each_others_files(platform: Platform) -> None:
    alice, bob = platform.new_tenant("alice"), platform.new_tenant("bob")
    as_alice, as_bob = platform.client(alice), platform.client(bob)
    assert _put(as_bob, "private.csv", b"bob's").status_code == 201
    assert as_alice.get("/v1/data").json()["total"] == 0
    assert as_alice.get("/v1/data/private.csv").status_code == 404
    assert as_alice.delete("/v1/data/private.csv").status_code == 404
    assert _put(as_alice, "private.csv", b"alice's").status_code == 201  # her own, new file
    assert as_bob.get("/v1/data/private.csv").content == b"bob's"
    assert as_alice.get("/v1/data/private.csv").content == b"alice's"
    status, _ = _raw(platform, alice, "GET", f"/v1/data/../../{bob.id}/data/private.csv")
    assert status == 422


def test_data_routes_need_credentials(platform: Platform) -> None:
    anonymous = platform.client()
    assert anonymous.get("/v1/data").status_code == 401
    assert anonymous.put("/v1/data/x.csv", content=b"x").status_code == 401
    assert anonymous.get("/v1/data/x.csv").status_code == 401
    assert anonymous.delete("/v1/data/x.csv").status_code == 401


# -- jobs read what was uploaded ----------------------------------------------------------------


def test_a_job_naming_the_upload_passes_submit_validation(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    name = f"jobs/{secrets.token_hex(4)}.csv"
    uploaded = _put(client, name, b"f0,label\n1,0\n").json()
    job = client.post("/v1/jobs/training", json=spec(data_path=uploaded["path"]))
    assert job.status_code == 201, job.text
    stored = job.json()
    data_path = (stored.get("spec") or stored)["data_path"]
    assert data_path == uploaded["path"]
    # the path the job's data_path resolves to is the very file that was uploaded
    engine = platform.context.engine
    assert engine is not None
    resolved = engine.paths.check_data_path(tenant.id, data_path)
    assert resolved.local is not None
    assert resolved.local.read_bytes() == b"f0,label\n1,0\n"


# -- the SDK's contract -------------------------------------------------------------------------


def test_sdk_data_upload_list_delete(platform: Platform, tenant: Tenant, tmp_path: Path) -> None:
    source = tmp_path / "dataset"
    (source / "part").mkdir(parents=True)
    (source / "a.csv").write_bytes(b"a")
    (source / "part" / "b.csv").write_bytes(b"bb")
    single = tmp_path / "single.csv"
    single.write_bytes(b"single")
    with Client(base_url=platform.base_url, api_key=tenant.api_key, max_retries=0) as sdk:
        one = sdk.data.upload(single)
        assert one.path == "data/single.csv"
        assert one.sha256 == hashlib.sha256(b"single").hexdigest()
        tree = sdk.data.upload(source, "sets/v1")
        assert tree.path == "data/sets/v1" and tree.size_bytes == 3
        listed = [f.path for f in sdk.data.list(prefix="data/sets/")]
        assert listed == ["data/sets/v1/a.csv", "data/sets/v1/part/b.csv"]
        sdk.data.delete("data/single.csv")
        assert [f.path for f in sdk.data.list()] == listed
        me = sdk.me()
        assert me.tenant_id == tenant.id and me.data_prefix == "data/"


# -- concurrency and broken uploads ---------------------------------------------------------------


def test_concurrent_uploads_to_one_path_leave_one_whole_file(
    platform: Platform, tenant: Tenant
) -> None:
    bodies = [bytes([i]) * (512 * 1024 + i) for i in range(8)]

    def upload(body: bytes) -> int:
        with httpx.Client(base_url=platform.base_url, timeout=60) as c:
            c.headers["X-API-Key"] = tenant.api_key
            return _put(c, "race/one.bin", body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(upload, bodies))
    assert sorted(statuses)[-1] in (200, 201) and set(statuses) <= {200, 201}
    assert statuses.count(201) >= 1
    final = (_area(platform, tenant) / "race" / "one.bin").read_bytes()
    assert final in bodies  # one upload, whole: never a mix
    assert sorted(p.name for p in (_area(platform, tenant) / "race").iterdir()) == ["one.bin"]


def test_a_client_that_hangs_up_mid_upload_leaves_nothing(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    url = urlsplit(platform.base_url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    head = (
        f"PUT /v1/data/cut/half.bin HTTP/1.1\r\nHost: x\r\nX-API-Key: {tenant.api_key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 4000000\r\n\r\n"
    )
    sock.sendall(head.encode() + b"z" * 2_500_000)  # more than one flush to disk, then gone
    cut = _area(platform, tenant) / "cut"
    deadline = time.monotonic() + 30  # a safety net against hangs, not an assertion
    while not (cut.exists() and any(cut.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)  # the server has begun writing the temporary file
    assert [p.name.startswith(".mlp-upload-") for p in cut.iterdir()] == [True]
    sock.close()
    while cut.exists() and any(cut.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not cut.exists() or list(cut.iterdir()) == []
    assert client.get("/v1/data/cut/half.bin").status_code == 404
    assert client.get("/v1/data", params={"prefix": "cut/"}).json()["total"] == 0


def test_async_sdk_data_and_me(platform: Platform, tenant: Tenant, tmp_path: Path) -> None:
    local = tmp_path / "async.csv"
    local.write_bytes(b"async")

    async def scenario() -> None:
        async with AsyncClient(base_url=platform.base_url, api_key=tenant.api_key) as sdk:
            uploaded = await sdk.data.upload(local, "a/async.csv")
            assert uploaded.path == "data/a/async.csv" and uploaded.size_bytes == 5
            assert [f.path async for f in sdk.data.list(prefix="a/")] == ["data/a/async.csv"]
            await sdk.data.delete(uploaded.path)
            assert [f.path async for f in sdk.data.list()] == []
            me = await sdk.me()
            assert (me.tenant_name, me.auth_method) == (tenant.name, "api_key")

    asyncio.run(scenario())


# -- a job reads the uploaded file ----------------------------------------------------------------

READER = """\
import hashlib, os, pathlib
data = pathlib.Path(os.environ["ML_PLATFORM_DATA_PATH"]).read_bytes()
out = pathlib.Path(os.environ["ML_PLATFORM_OUTPUT_DIR"])
(out / "seen.txt").write_text(hashlib.sha256(data).hexdigest())
"""


@pytest.fixture(scope="module")
def running_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    running, server = start_platform(
        "sqlite",
        tmp_path_factory.mktemp("data-jobs"),
        database_url_factory("sqlite"),
        scheduler_enabled=True,
        scheduler_interval_seconds=0.2,
        node_cpu_cores=2,
        node_memory_gb=4,
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


def test_a_job_reads_the_file_it_names(running_platform: Platform) -> None:
    tenant = running_platform.new_tenant()
    client = running_platform.client(tenant)
    payload = os.urandom(300_000)
    uploaded = _put(client, "e2e/train.bin", payload).json()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.py", READER)
    package = client.post(
        "/v1/code-packages", content=archive.getvalue(), headers={"Content-Type": "application/zip"}
    )
    assert package.status_code in (200, 201), package.text
    job = client.post(
        "/v1/jobs/training",
        json=spec(
            data_path=uploaded["path"],
            output_path="models/e2e",
            entrypoint="python train.py",
            source=package.json()["id"],
            compute={"compute_type": "cpu", "cpu_cores": 1, "memory_gb": 1, "gpu_count": 0},
        ),
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 120  # a safety net against hangs, not an assertion
    while (state := client.get(f"/v1/jobs/training/{job_id}").json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "succeeded", state
    seen = (_root(running_platform, tenant) / "models" / "e2e" / "seen.txt").read_text()
    assert seen == uploaded["sha256"] == hashlib.sha256(payload).hexdigest()
