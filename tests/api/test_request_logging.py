"""Request ids in logs and JSON log lines.

- In process: every record logged while a request is served (async route, sync route in the
  thread pool, the catch-all 500) carries that request's id, and the access line names method,
  route template, status and duration; a forged ``X-Request-ID`` is replaced.
- A real ``mlp server`` with ``ML_PLATFORM_LOG_FORMAT=json``: every log line on stderr is one
  JSON object; access lines carry the request id echoed in ``X-Request-ID`` and the tenant;
  neither the API key nor a job's env var value appears anywhere in the logs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ml_platform.api.middleware import RequestContextMiddleware
from ml_platform.api.problems import install_problem_handlers
from ml_platform.logs_format import (
    ACCESS_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    accept_request_id,
)
from tests.api.job_specs import spec
from tests.conftest import ServerThread
from tests.ports import free_port

ROUTE_LOGGER = "tests.request_logging.route"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def logged() -> Iterator[tuple[str, _Collect]]:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware, max_body_bytes=4096)
    install_problem_handlers(app)
    route_logger = logging.getLogger(ROUTE_LOGGER)

    @app.get("/async/{item}")
    async def in_loop(item: str) -> dict[str, str]:
        route_logger.warning("async route saw %s", item)
        return {"item": item}

    @app.get("/sync")
    def in_thread() -> dict[str, bool]:
        route_logger.warning("sync route in the thread pool")
        return {"ok": True}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    handler = _Collect()
    loggers = [logging.getLogger(name) for name in (ROUTE_LOGGER, "ml_platform")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    server = ServerThread(app)
    try:
        yield server.start(), handler
    finally:
        server.stop()
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def _of(handler: _Collect, request_id: str) -> list[dict[str, object]]:
    docs = [json.loads(line) for line in handler.lines]
    return [d for d in docs if d["request_id"] == request_id]


def test_every_line_of_a_request_names_its_id(logged: tuple[str, _Collect]) -> None:
    base_url, handler = logged
    with httpx.Client(base_url=base_url) as client:
        answers = [
            client.get("/async/a1", headers={"X-Request-ID": "trace-async-1"}),
            client.get("/sync", headers={"X-Request-ID": "trace-sync-1"}),
            client.get("/boom", headers={"X-Request-ID": "trace-boom-1"}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 500]
    assert [a.headers["x-request-id"] for a in answers] == [
        "trace-async-1",
        "trace-sync-1",
        "trace-boom-1",
    ]
    mine = _of(handler, "trace-async-1")
    assert (mine[0]["logger"], mine[0]["message"]) == (ROUTE_LOGGER, "async route saw a1")
    assert len(mine) == 2 and mine[1]["logger"] == ACCESS_LOGGER
    access = mine[1]
    assert str(access["message"]).startswith("GET /async/{item} 200 ")
    assert access["method"] == "GET" and access["route"] == "/async/{item}"
    assert access["status"] == 200 and isinstance(access["duration_ms"], float)
    assert access["tenant"] is None
    assert [d["logger"] for d in _of(handler, "trace-sync-1")] == [ROUTE_LOGGER, ACCESS_LOGGER]
    boom = _of(handler, "trace-boom-1")
    assert [d["logger"] for d in boom] == ["ml_platform.api.middleware", ACCESS_LOGGER]
    assert "RuntimeError: boom" in str(boom[0]["exc_info"])
    assert boom[1]["status"] == 500
    # outside any request: no id
    outside = logging.LogRecord(ROUTE_LOGGER, logging.INFO, __file__, 1, "idle", None, None)
    handler.handle(outside)
    assert json.loads(handler.lines[-1])["request_id"] is None


@pytest.mark.parametrize(
    "forged",
    [
        "a" * 129,
        "two words",
        "tab\there",
        "semi;colon",
        "-leading-dash",
        'quote"d',
        "<script>",
        "ünïcode",
    ],
)
def test_an_unsafe_request_id_is_replaced(logged: tuple[str, _Collect], forged: str) -> None:
    base_url, handler = logged
    with httpx.Client(base_url=base_url) as client:
        answer = client.get("/sync", headers={"X-Request-ID": forged.encode("utf-8")})
    assert answer.status_code == 200
    given = answer.headers["x-request-id"]
    assert given != forged and given.startswith("req_") and len(given) == 28
    assert [d["logger"] for d in _of(handler, given)] == [ROUTE_LOGGER, ACCESS_LOGGER]
    assert all(forged not in line for line in handler.lines)


def test_safe_request_ids_are_kept() -> None:
    for good in ("0af7651916cd43dd8448eb211c80319c", "req_1", "a.b:c@d/e+f=g-h_i", "x" * 128):
        assert accept_request_id(good) == good
    assert accept_request_id(None).startswith("req_")
    assert accept_request_id(b"").startswith("req_")


# -- a real `mlp server` with JSON logs ---------------------------------------------------------


def _start_server(data_dir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "ML_PLATFORM_CONFIG_DIR": str(data_dir / "config"),
        "ML_PLATFORM_JWT_SECRET": "log-test-" + "s" * 40,
        "ML_PLATFORM_SCHEDULER_ENABLED": "false",
        **env_extra,
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlp")),
            "server",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--no-serving",
        ],
        env=env,
        stdout=open(data_dir / "stdout.txt", "wb"),  # noqa: SIM115 (closed with the process)
        stderr=open(data_dir / "stderr.txt", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError((data_dir / "stderr.txt").read_text())


def test_mlp_server_json_logs_carry_request_ids_and_no_secret(tmp_path: Path) -> None:
    env_secret = "envsecret-" + secrets.token_hex(12)
    proc, base = _start_server(tmp_path, {"ML_PLATFORM_LOG_FORMAT": "json"})
    try:
        api_key = json.loads((tmp_path / "config" / "credentials.json").read_text())["api_key"]
        sent: dict[str, int] = {}
        with httpx.Client(base_url=base, headers={"X-API-Key": api_key}, timeout=30) as client:
            created = client.post(
                "/v1/jobs/training",
                json=spec(env_vars={"TOKEN": env_secret}),
                headers={"X-Request-ID": "trace-create-1"},
            )
            assert created.status_code == 201, created.text
            sent[created.headers["x-request-id"]] = 201
            job_id = created.json()["id"]
            got = client.get(f"/v1/jobs/training/{job_id}")
            assert got.status_code == 200
            sent[got.headers["x-request-id"]] = 200
            bad = client.get("/v1/jobs/training", headers={"X-API-Key": api_key + "x"})
            assert bad.status_code == 401
            sent[bad.headers["x-request-id"]] = 401
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    stderr = (tmp_path / "stderr.txt").read_text()
    lines = [line for line in stderr.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every log line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= d.keys() for d in docs)
    assert any(d["logger"].startswith("uvicorn") for d in docs)  # uvicorn's own lines too
    access = {d["request_id"]: d for d in docs if d["logger"] == ACCESS_LOGGER}
    assert set(sent) <= set(access)
    assert "trace-create-1" in sent
    tenant_id = created.json()["tenant_id"]
    for request_id, status in sent.items():
        line = access[request_id]
        assert line["status"] == status
        assert line["method"] in ("GET", "POST")
        assert line["route"] in ("/v1/jobs/training", "/v1/jobs/training/{job_id}")
        assert job_id not in line["route"]
        if status != 401:
            assert line["tenant"] == tenant_id
        else:
            assert line["tenant"] is None
    logs = stderr + (tmp_path / "stdout.txt").read_text().replace(api_key, "<printed once>")
    assert env_secret not in logs
    assert api_key not in stderr
    assert api_key.rsplit("_", 1)[-1] not in stderr  # not even the secret part of the key
