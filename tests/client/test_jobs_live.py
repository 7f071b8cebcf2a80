"""Jobs that really run (scheduler on, local executor) through the SDK: ``logs(follow=True)``
resuming after cut connections, and ``wait()`` on success, failure and timeout, with the
progress line only on a terminal. One suite for both clients."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ml_platform import Client, JobFailedError
from tests.client._proxy import FailingProxy
from tests.client.conftest import collect, done, make_client, write_script
from tests.conftest import Platform

CHATTY = (
    "import time\n"
    "from ml_platform import runtime\n"
    "for i in range(1, 201):\n"
    "    print(f'line {i}', flush=True)\n"
    "    if i % 50 == 0:\n"
    "        runtime.log_metrics({'seen': i}, step=i)\n"
    "    time.sleep(0.01)\n"
)
FAILING = "print('about to fail', flush=True)\nraise SystemExit('boom: the data is bad')\n"
SLOW = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


def _job_args(name: str, source_dir: Path) -> dict[str, Any]:
    return {
        "name": name,
        "source_dir": source_dir,
        "data_path": "data/train.csv",
        "output_path": f"models/{name}",
        "cpu_cores": 1,
        "memory_gb": 1,
    }


async def test_follow_resumes_after_cut_connections_with_every_line_once(
    job_platform: Platform, job_proxy: FailingProxy, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    job_proxy.cut_streams(40, 40)  # the first two streams die after 40 log events each
    client = make_client(kind, job_proxy.base_url, tenant.api_key)
    try:
        job = await done(client.train(**_job_args("chatty", write_script(tmp_path, CHATTY))))
        lines = await collect(client.jobs.logs(job.id, follow=True))
        status = (await done(client.get_job(job.id))).status
    finally:
        await done(client.close())
    assert status == "succeeded"
    stored = job_platform.client(tenant).get(
        f"/v1/jobs/training/{job.id}/logs", params={"tail": 10000}
    )
    assert [line.id for line in lines] == [entry["id"] for entry in stored.json()["logs"]]
    assert [line.line for line in lines if line.stream == "stdout"] == [
        f"line {i}" for i in range(1, 201)
    ]
    opened = job_proxy.to("GET", f"/v1/jobs/training/{job.id}/logs")
    assert len(opened) >= 3
    # each reconnect resumed after the last line the previous (cut) stream delivered
    resumed = [a.headers.get("last-event-id") for a in opened[:3]]
    first, second = job_proxy.streams[0], job_proxy.streams[1]
    assert resumed == ["0", str(first[-1]), str(second[-1])]
    assert len(first) == 40 and second[0] == first[-1] + 1


async def test_wait_returns_the_succeeded_job_and_prints_nothing_off_a_terminal(
    job_platform: Platform, kind: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tenant = job_platform.new_tenant()
    client = make_client(kind, job_platform.base_url, tenant.api_key)
    try:
        job = await done(client.train(**_job_args("waited", write_script(tmp_path, CHATTY))))
        assert job.output_path is None  # not before it succeeded
        returned = await done(job.wait(polling_interval=0.1, timeout=120))
        metrics = await done(job.get_metrics())
        tail = await done(job.get_logs(tail=3))
    finally:
        await done(client.close())
    assert returned is job and job.status == "succeeded"
    assert job.output_path == "models/waited"
    assert metrics == {"seen": 200.0}
    assert len(tail.splitlines()) == 3 and "line 200" in tail.splitlines()  # + the end line
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


async def test_wait_on_a_failed_job_raises_job_failed_error_with_error_and_log_tail(
    job_platform: Platform, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    client = make_client(kind, job_platform.base_url, tenant.api_key)
    try:
        job = await done(client.train(**_job_args("doomed", write_script(tmp_path, FAILING))))
        with pytest.raises(JobFailedError) as failed:
            await done(job.wait(polling_interval=0.1, timeout=120))
    finally:
        await done(client.close())
    error = failed.value
    assert error.job is job and job.status == "failed"
    assert error.error_message and job.id in str(error)
    assert "about to fail" in error.log_tail
    assert "boom: the data is bad" in error.log_tail


async def test_wait_past_its_timeout_raises_timeout_error_and_the_job_can_be_cancelled(
    job_platform: Platform, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    client = make_client(kind, job_platform.base_url, tenant.api_key)
    try:
        job = await done(client.train(**_job_args("sleepy", write_script(tmp_path, SLOW))))
        with pytest.raises(TimeoutError):
            await done(job.wait(polling_interval=0.1, timeout=1.0))
        assert not job.is_finished
        await done(job.cancel())
        with pytest.raises(JobFailedError) as cancelled:
            await done(job.wait(polling_interval=0.1, timeout=60))
    finally:
        await done(client.close())
    assert job.status == "cancelled" and cancelled.value.job is job


PROGRESS_SCRIPT = """
import sys
from ml_platform import Client
client = Client(base_url=sys.argv[1], api_key=sys.argv[2])
client.get_job(sys.argv[3]).wait(polling_interval=0.1, timeout=120)
print("WAITED", flush=True)
"""


def test_wait_shows_a_progress_line_on_a_terminal(job_platform: Platform, tmp_path: Path) -> None:
    """A real pseudo-terminal as stderr: Rich draws ``job <id>  <status>  m:ss``."""
    tenant = job_platform.new_tenant()
    source = write_script(tmp_path, CHATTY)
    with Client(base_url=job_platform.base_url, api_key=tenant.api_key) as client:
        job = client.train(**_job_args("on-a-tty", source))
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRESS_SCRIPT, job_platform.base_url, tenant.api_key, job.id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    drawn = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
        out, _ = process.communicate(timeout=120)
    assert process.returncode == 0 and out == b"WAITED\n"
    text = drawn.decode(errors="replace")
    assert f"job {job.id}" in text and "succeeded" in text


async def test_follow_with_a_tail_starts_there_and_resumes_after_a_cut(
    job_platform: Platform, job_proxy: FailingProxy, kind: str, tmp_path: Path
) -> None:
    tenant = job_platform.new_tenant()
    client = make_client(kind, job_proxy.base_url, tenant.api_key)
    try:
        job = await done(client.train(**_job_args("tailed", write_script(tmp_path, CHATTY))))
        await done(job.wait(polling_interval=0.1, timeout=120))
        total = len(await collect(client.jobs.logs(job.id)))
        job_proxy.cut_streams(3)
        lines = await collect(client.jobs.logs(job.id, follow=True, tail=10))
    finally:
        await done(client.close())
    assert [line.id for line in lines] == list(range(total - 9, total + 1))
    opened = job_proxy.to("GET", f"/v1/jobs/training/{job.id}/logs")[-2:]
    assert "last-event-id" not in opened[0].headers  # the first asks for the tail
    assert opened[1].headers["last-event-id"] == str(job_proxy.streams[-2][-1])
