"""SSE resume and the WebSocket stream, against a real server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import Platform
from tests.jobs.conftest import sse_events, submit, upload, wait_for, zip_files

CHATTY = (
    "import time\n"
    "from ml_platform import runtime\n"
    "for i in range(1, 301):\n"
    "    print(f'line {i}', flush=True)\n"
    "    if i % 50 == 0:\n"
    "        runtime.log_metrics({'seen': i}, step=i)\n"
    "    time.sleep(0.002)\n"
)


def test_sse_resume_after_disconnect_loses_and_repeats_nothing(jobs_platform: Platform) -> None:
    client = jobs_platform.client(jobs_platform.new_tenant())
    job = submit(client, source=upload(client, zip_files({"train.py": CHATTY})))
    url = f"/v1/jobs/training/{job['id']}/logs"
    params = {"follow": "true", "tail": "10000"}
    seen: list[int] = []
    with client.stream("GET", url, params=params, timeout=60) as response:
        for event in sse_events(response):
            assert event.event == "log"
            seen.append(int(event.id or 0))
            if len(seen) == 40:
                break  # a dropped connection
    end = None
    with client.stream(
        "GET", url, params=params, headers={"Last-Event-ID": str(seen[-1])}, timeout=60
    ) as response:
        for event in sse_events(response):
            if event.event == "end":
                end = event.data
                break
            seen.append(int(event.id or 0))
    assert end == {"status": "succeeded"}
    total = len(client.get(url, params={"tail": 10000}).json()["logs"])
    assert seen == list(range(1, total + 1))
    printed = [
        e for e in client.get(url, params={"tail": 10000}).json()["logs"] if e["stream"] == "stdout"
    ]
    assert [e["line"] for e in printed] == [f"line {i}" for i in range(1, 301)]


def _ws_url(platform: Platform, job_id: str) -> str:
    return platform.base_url.replace("http://", "ws://") + f"/v1/jobs/training/{job_id}/stream"


def _drain(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=60)))
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        return messages, code


@pytest.mark.parametrize("via", ["header", "subprotocol"])
def test_websocket_streams_status_logs_metrics_then_closes(
    jobs_platform: Platform, via: str
) -> None:
    tenant = jobs_platform.new_tenant()
    client = jobs_platform.client(tenant)
    job = submit(client, source=upload(client, zip_files({"train.py": CHATTY})))
    kwargs: dict[str, Any] = (
        {"additional_headers": {"X-API-Key": tenant.api_key}}
        if via == "header"
        else {"subprotocols": ["mlp.v1", f"mlp.auth.{tenant.api_key}"]}
    )
    with connect(_ws_url(jobs_platform, job["id"]), **kwargs) as ws:
        if via == "subprotocol":
            assert ws.subprotocol == "mlp.v1"
        messages, code = _drain(ws)
    assert code == 1000
    kinds = {m["type"] for m in messages}
    assert {"status", "log", "metric", "end"} <= kinds
    assert messages[-1] == {"type": "end", "status": "succeeded", "error_message": None}
    logs = [m for m in messages if m["type"] == "log"]
    assert [m["id"] for m in logs] == list(range(1, len(logs) + 1))
    assert [m["value"] for m in messages if m["type"] == "metric"] == [50, 100, 150, 200, 250, 300]


def test_websocket_denies_other_tenants_and_anonymous(jobs_platform: Platform) -> None:
    owner, intruder = jobs_platform.new_tenant(), jobs_platform.new_tenant()
    client = jobs_platform.client(owner)
    job = submit(client, entrypoint='python -c "print(1)"')
    wait_for(client, job["id"], {"succeeded", "failed"})
    url = _ws_url(jobs_platform, job["id"])
    with connect(url, additional_headers={"X-API-Key": intruder.api_key}) as ws:
        assert _drain(ws) == ([], 4404)
    with connect(url) as ws:
        assert _drain(ws) == ([], 4401)
    with connect(url, subprotocols=["mlp.v1", "mlp.auth.mlp_not_a_real_key"]) as ws:
        assert _drain(ws) == ([], 4401)
    with connect(
        url, additional_headers={"X-API-Key": owner.api_key, "Origin": "https://evil.example"}
    ) as ws:
        assert _drain(ws) == ([], 4403)
