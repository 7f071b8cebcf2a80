"""Code-package uploads stream: the server refuses an over-limit body (413) while the client
is still sending it, for a raw body and for a multipart form, and keeps no scratch file; a
normal upload is stored under the SHA-256 of its bytes, whichever way it was sent.

The over-limit client speaks HTTP/1.1 on a raw socket with a chunked body it never ends by
itself, so a server that waited for the whole body (as Starlette's form parser does) would
not answer before the client gave up at ``GIVE_UP_BYTES``."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Platform, Tenant, start_platform
from tests.jobs.test_code_packages import make_zip

LIMIT = 1024 * 1024
CHUNK = 64 * 1024
GIVE_UP_BYTES = 64 * 1024 * 1024
ANSWERED_BEFORE = 24 * 1024 * 1024
"""Far past the limit plus what loopback socket buffers can absorb, far below GIVE_UP_BYTES."""


@pytest.fixture(scope="module")
def small_limit_platform(
    tmp_path_factory: pytest.TempPathFactory, database_url_factory: Any
) -> Iterator[Platform]:
    url = database_url_factory("sqlite")
    running, server = start_platform(
        "sqlite", tmp_path_factory.mktemp("upload-data"), url, max_code_package_bytes=LIMIT
    )
    yield running
    running.close()
    server.stop()
    running.db.dispose()


@pytest.fixture
def tenant(small_limit_platform: Platform) -> Tenant:
    return small_limit_platform.new_tenant("upload")


def _scratch_files(platform: Platform) -> list[Path]:
    cache = Path(platform.settings.data_dir) / "cache" / "code-packages"
    return sorted(cache.glob(".upload-*")) if cache.is_dir() else []


def _send_until_answered(
    platform: Platform, api_key: str, content_type: str, prefix: bytes
) -> tuple[int, int, dict[str, Any]]:
    """POST a chunked body (``prefix`` then random bytes) until the server answers or
    GIVE_UP_BYTES were sent; (bytes sent, status, problem body)."""
    address = urlsplit(platform.base_url)
    head = (
        f"POST /v1/code-packages HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"X-API-Key: {api_key}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    filler = os.urandom(CHUNK)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        outgoing = b"%x\r\n%s\r\n" % (len(prefix), prefix)
        sent = 0
        answer = b""
        while True:
            readable, writable, _ = select.select([sock], [sock] if outgoing else [], [], 30)
            if readable:
                data = sock.recv(65536)
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break
                continue
            if not writable:
                raise AssertionError("the server neither read the body nor answered in 30 s")
            written = sock.send(outgoing)
            sent += written
            outgoing = outgoing[written:]
            if not outgoing and sent < GIVE_UP_BYTES:
                outgoing = b"%x\r\n%s\r\n" % (len(filler), filler)
            elif not outgoing and sent >= GIVE_UP_BYTES:
                sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        headers, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                break
            body += more
    status = int(headers.split(b" ", 2)[1])
    return sent, status, json.loads(body)


def _multipart_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="code.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_over_limit_upload_is_refused_while_it_is_being_sent(
    small_limit_platform: Platform, tenant: Tenant, form: bool
) -> None:
    boundary = secrets.token_hex(16)
    content_type = f"multipart/form-data; boundary={boundary}" if form else "application/zip"
    prefix = _multipart_head(boundary) if form else b"PK\x03\x04"
    sent, status, problem = _send_until_answered(
        small_limit_platform, tenant.api_key, content_type, prefix
    )
    assert status == 413, problem
    assert f"{LIMIT}-byte limit" in problem["detail"]
    assert LIMIT < sent < ANSWERED_BEFORE, sent
    assert _scratch_files(small_limit_platform) == []
    # the server is fine afterwards
    client = small_limit_platform.client(tenant)
    assert client.get("/v1/code-packages/sha256:" + "0" * 64).status_code == 404


def test_upload_round_trips_by_hash(small_limit_platform: Platform, tenant: Tenant) -> None:
    # just under the limit, several flushes' worth of chunks, incompressible
    data = make_zip({"train.py": b"print('hi')\n", "blob.bin": os.urandom(LIMIT - 4096)})
    assert len(data) <= LIMIT
    digest = hashlib.sha256(data).hexdigest()
    client = small_limit_platform.client(tenant)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        for start in range(0, len(data), 10_000):
            yield data[start : start + 10_000]

    first = client.post(
        "/v1/code-packages", content=chunks(), headers={"Content-Type": "application/zip"}
    )
    assert first.status_code == 201, first.text
    assert first.json()["id"] == f"sha256:{digest}"
    assert first.json()["size_bytes"] == len(data)
    assert first.json()["file_count"] == 2
    again = client.post("/v1/code-packages", files={"file": ("code.zip", data)})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == f"sha256:{digest}"
    storage = small_limit_platform.context.engine.storage  # type: ignore[union-attr]
    assert storage.get_bytes(f"code-packages/{digest}/archive", digest) == data
    assert _scratch_files(small_limit_platform) == []
    # one byte over the limit, sent whole with its length: refused from the header alone
    over = make_zip({"blob.bin": os.urandom(LIMIT)})
    refused = client.post(
        "/v1/code-packages", content=over, headers={"Content-Type": "application/zip"}
    )
    assert refused.status_code == 413, refused.text
