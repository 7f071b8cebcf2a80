"""``max_storage_bytes`` counts every byte a tenant stores (issue 10): data files, the code
packages it owns and its model artifacts, through the real API on SQLite and PostgreSQL.

A data upload or a code package over the limit is refused with the quota's 429 problem before
anything is published (no file, no scratch file, no row); ``GET /v1/quotas`` shows the sum;
overwrites and deletes move it; concurrent uploads never pass the last bytes together.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import socket
import threading
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ml_platform.core.errors import QuotaExceeded
from ml_platform.data.service import DataArea
from ml_platform.governance.storage_ledger import StorageLedger
from ml_platform.jobs.paths import PathPolicy
from ml_platform.storage import Storage
from ml_platform.store.base import Base
from tests.api.test_quotas_api import Admin, _problem, _rejected, quotas_of
from tests.api.version_rows import add_version_row
from tests.conftest import Platform, Tenant
from tests.s3_server import S3
from tests.scaleout.conftest import BUCKET

STORED = "bytes (data files, code packages, model artifacts)"
ADVICE = (
    "delete data files or model versions you no longer need, or ask an administrator to "
    "raise the quota"
)


def _usage(client: httpx.Client) -> int:
    response = client.get("/v1/quotas")
    assert response.status_code == 200, response.text
    usage: int = quotas_of(response.json())["max_storage_bytes"]["usage"]
    return usage


def _put(client: httpx.Client, path: str, content: Any) -> httpx.Response:
    return client.put(
        f"/v1/data/{path}", content=content, headers={"Content-Type": "application/octet-stream"}
    )


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", text)
    return buffer.getvalue()


def _area(platform: Platform, tenant: Tenant) -> Path:
    engine = platform.context.engine
    assert engine is not None
    return engine.paths.tenant_root(tenant.id) / "data"


def _files_in(area: Path) -> list[str]:
    """Every entry of the data area, scratch files included."""
    if not area.exists():
        return []
    return sorted(str(p.relative_to(area)) for p in area.rglob("*"))


def _refused(
    response: httpx.Response, *, instance: str, limit: int, usage: int, adds: str, what: str
) -> None:
    """The exact 429 problem of a refused storage quota."""
    detail = (
        f"tenant quota max_storage_bytes is {limit}: the tenant already stores {usage} "
        f"{STORED} and {what} adds {adds}; {ADVICE}"
    )
    _problem(
        response,
        instance=instance,
        detail=detail,
        limit="max_storage_bytes",
        value=limit,
        usage=usage,
    )


def test_usage_is_data_plus_code_packages_plus_model_artifacts(
    platform: Platform, tenant: Tenant, client: httpx.Client
) -> None:
    assert _usage(client) == 0
    assert _put(client, "a.csv", b"a" * 300).status_code == 201
    assert _put(client, "dir/b.csv", b"b" * 200).status_code == 201
    package = _zip(f"print({secrets.token_hex(4)!r})\n")
    created = client.post(
        "/v1/code-packages", content=package, headers={"Content-Type": "application/zip"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["size_bytes"] == len(package)
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, model, size_bytes=70)
    assert _usage(client) == 300 + 200 + len(package) + 70


def test_overwrite_and_delete_move_the_usage(client: httpx.Client) -> None:
    assert _put(client, "f.bin", b"x" * 1000).status_code == 201
    assert _put(client, "g.bin", b"y" * 10).status_code == 201
    assert _usage(client) == 1010
    assert _put(client, "f.bin", b"x" * 400).status_code == 200  # replaced: its new size only
    assert _usage(client) == 410
    assert _put(client, "f.bin", b"x" * 2500).status_code == 200
    assert _usage(client) == 2510
    assert client.delete("/v1/data/f.bin").status_code == 204
    assert _usage(client) == 10
    assert client.delete("/v1/data/f.bin").status_code == 404  # gone, nothing left to charge
    assert _usage(client) == 10


def test_a_data_upload_over_the_limit_is_429_and_stores_nothing(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    assert _put(client, "kept.bin", b"k" * 600).status_code == 201
    admin.set(tenant, max_storage_bytes=1000)
    fits = _put(client, "fits.bin", b"f" * 400)  # exactly at the limit: accepted
    assert fits.status_code == 201, fits.text
    assert _usage(client) == 1000

    rejected = _rejected(platform, "max_storage_bytes")
    refused = _put(client, "over.bin", b"o" * 1)  # declared by Content-Length
    assert _rejected(platform, "max_storage_bytes") == rejected + 1  # /metrics counts it
    _refused(
        refused, instance="/v1/data/over.bin", limit=1000, usage=1000, adds="1", what="this upload"
    )
    assert client.get("/v1/data/over.bin").status_code == 404
    assert _files_in(_area(platform, tenant)) == ["fits.bin", "kept.bin"]  # no scratch file
    assert _usage(client) == 1000  # no row

    # an overwrite is charged what it adds: growing is refused, the old file stays whole
    grown = _put(client, "kept.bin", b"K" * 601)
    _refused(
        grown, instance="/v1/data/kept.bin", limit=1000, usage=1000, adds="1", what="this upload"
    )
    assert client.get("/v1/data/kept.bin").content == b"k" * 600
    # shrinking always fits, and frees room for what the limit allows
    assert _put(client, "kept.bin", b"k" * 100).status_code == 200
    assert _usage(client) == 500
    assert _put(client, "over.bin", b"o" * 500).status_code == 201
    assert _usage(client) == 1000
    assert _files_in(_area(platform, tenant)) == ["fits.bin", "kept.bin", "over.bin"]


def test_a_streamed_upload_is_refused_once_it_passes_the_allowance(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    admin.set(tenant, max_storage_bytes=1000)
    assert _put(client, "first.bin", b"1" * 900).status_code == 201

    def chunks() -> Any:  # no Content-Length: chunked transfer encoding
        yield b"s" * 60
        yield b"s" * 60

    refused = _put(client, "streamed.bin", chunks())
    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    found = re.fullmatch(
        "tenant quota max_storage_bytes is 1000: the tenant already stores 900 "
        rf"{re.escape(STORED)} and this upload adds at least (\d+); {re.escape(ADVICE)}",
        detail,
    )
    assert found is not None, detail
    assert 100 < int(found.group(1)) <= 120  # refused past the 100 bytes left, at the latest
    assert refused.headers["x-should-retry"] == "false"
    assert _files_in(_area(platform, tenant)) == ["first.bin"]
    assert _usage(client) == 900


def test_the_refusal_comes_before_the_rest_of_the_body(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    """The body passes the allowance in its first chunk and never ends: the 429 arrives all
    the same, while the client still holds the rest of the body."""
    admin.set(tenant, max_storage_bytes=100)
    url = urlsplit(platform.base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), 30) as sock:
        head = (
            f"PUT /v1/data/endless.bin HTTP/1.1\r\nHost: x\r\nX-API-Key: {tenant.api_key}\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode() + b"%x\r\n" % 150 + b"e" * 150 + b"\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = sock.recv(65536)
            assert got, "the server closed the connection without an answer"
            answer += got
    assert answer.startswith(b"HTTP/1.1 429 "), answer[:200]
    assert b"\r\nx-should-retry: false\r\n" in answer.lower()
    assert _files_in(_area(platform, tenant)) == []
    assert _usage(client) == 0


def test_a_code_package_counts_once_per_owning_tenant(platform: Platform) -> None:
    first, second = platform.new_tenant(), platform.new_tenant()
    package = _zip(f"print({secrets.token_hex(8)!r})\n")
    headers = {"Content-Type": "application/zip"}

    def upload(tenant: Tenant) -> int:
        response = platform.client(tenant).post(
            "/v1/code-packages", content=package, headers=headers
        )
        assert response.is_success, response.text
        return response.status_code

    assert upload(first) == 201
    assert upload(first) == 200  # the same bytes again: still one package
    assert _usage(platform.client(first)) == len(package)
    assert upload(second) == 201  # another owner of the shared blob is charged for it too
    assert _usage(platform.client(first)) == len(package)
    assert _usage(platform.client(second)) == len(package)


def test_a_code_package_over_the_limit_is_429(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    owned = _zip(f"print({secrets.token_hex(8)!r})\n")
    headers = {"Content-Type": "application/zip"}
    assert client.post("/v1/code-packages", content=owned, headers=headers).status_code == 201
    admin.set(tenant, max_storage_bytes=len(owned))  # full
    again = client.post("/v1/code-packages", content=owned, headers=headers)
    assert again.status_code == 200, again.text  # an owner's re-upload adds nothing
    other = _zip(f"print({secrets.token_hex(8)!r})\n")
    refused = client.post("/v1/code-packages", content=other, headers=headers)
    _refused(
        refused,
        instance="/v1/code-packages",
        limit=len(owned),
        usage=len(owned),
        adds=str(len(other)),
        what="this code package",
    )
    package_id = "sha256:" + hashlib.sha256(other).hexdigest()
    assert client.get(f"/v1/code-packages/{package_id}").status_code == 404
    assert _usage(client) == len(owned)


def test_a_model_version_over_the_limit_names_everything_counted(
    platform: Platform, admin: Admin, tenant: Tenant, client: httpx.Client
) -> None:
    """Model artifacts share the limit with data files (and are counted once, from their
    version rows)."""
    assert _put(client, "d.bin", b"d" * 50).status_code == 201
    model = f"m-{secrets.token_hex(4)}"
    assert client.post("/v1/models", json={"name": model, "framework": "sklearn"}).is_success
    add_version_row(platform, tenant, model, size_bytes=40)
    admin.set(tenant, max_storage_bytes=100)
    artifact = b"not a model, but the quota answers first" * 2  # 82 bytes
    refused = client.post(f"/v1/models/{model}/versions", files={"file": ("m.joblib", artifact)})
    _refused(
        refused,
        instance=f"/v1/models/{model}/versions",
        limit=100,
        usage=90,
        adds=str(len(artifact)),
        what="this version",
    )


def test_concurrent_uploads_never_pass_the_last_bytes_together(
    platform: Platform, admin: Admin, tenant: Tenant
) -> None:
    size, fitting, racers = 1000, 3, 8
    admin.set(tenant, max_storage_bytes=size * fitting)
    start = threading.Barrier(racers)
    statuses: list[int] = []
    lock = threading.Lock()

    def upload(n: int) -> None:
        with httpx.Client(
            base_url=platform.base_url, headers={"X-API-Key": tenant.api_key}, timeout=60
        ) as own:
            start.wait()
            status = _put(own, f"race/{n}.bin", bytes([n]) * size).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * fitting + [429] * (racers - fitting)
    client = platform.client(tenant)
    assert _usage(client) == size * fitting
    assert client.get("/v1/data", params={"prefix": "race/"}).json()["total"] == fitting
    assert len(_files_in(_area(platform, tenant) / "race")) == fitting  # no scratch file left


def test_migration_0015_matches_the_table(platform: Platform) -> None:
    with platform.db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if "stored_objects" in repr(d)] == []


def test_a_remote_data_area_is_charged_the_same_way(
    platform: Platform, admin: Admin, tenant: Tenant, s3: S3, tmp_path: Path
) -> None:
    """With the area in an object store (S3 API: moto on loopback) the refused upload leaves
    no object and no pending object; overwrite and delete move the charge as on disk."""
    uri = f"s3://{BUCKET}/quota-{secrets.token_hex(4)}"
    storage = Storage(uri, s3.options)
    area = DataArea(
        PathPolicy(tmp_path / "scratch", storage_uri=uri),
        1024 * 1024,
        storage,
        StorageLedger(platform.db, platform.context.quotas),
    )

    def upload(path: str, data: bytes) -> bool:
        pending = area.begin_upload(tenant.id, path)
        try:
            for start in range(0, len(data), 100):
                pending.write(data[start : start + 100])
            return pending.commit()[1]
        finally:
            pending.abort()

    client = platform.client(tenant)
    assert upload("a.bin", b"a" * 700) is True
    assert _usage(client) == 700
    admin.set(tenant, max_storage_bytes=1000)
    with pytest.raises(QuotaExceeded) as streamed:
        upload("b.bin", b"b" * 450)  # passes the 300 bytes left in its fourth chunk
    assert streamed.value.message == (
        f"tenant quota max_storage_bytes is 1000: the tenant already stores 700 {STORED} and "
        f"this upload adds at least 400; {ADVICE}"  # refused there, not at the end (450)
    )
    with pytest.raises(QuotaExceeded):
        area.begin_upload(tenant.id, "c.bin", declared_size=301)
    assert storage.list(f"tenants/{tenant.id}") == [
        f"tenants/{tenant.id}/.mlp-data-meta/a.bin",
        f"tenants/{tenant.id}/data/a.bin",
    ]  # neither b.bin nor a pending object of it
    assert upload("a.bin", b"a" * 1000) is False  # an overwrite: 300 more, exactly the limit
    assert _usage(client) == 1000
    area.delete(tenant.id, "a.bin")
    assert _usage(client) == 0
    assert storage.list(f"tenants/{tenant.id}/data") == []
