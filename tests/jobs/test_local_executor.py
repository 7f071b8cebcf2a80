from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import joblib
import psutil
import pytest

from ml_platform.core.jobs import JobStatus
from ml_platform.jobs.executors.base import JobLaunch
from ml_platform.jobs.executors.local import LocalExecutor
from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.metrics import MetricPoint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from make_dataset import make_dataset  # noqa: E402


class Collected:
    def __init__(self) -> None:
        self.points: list[MetricPoint] = []

    async def __call__(self, job_id: str, points: Sequence[MetricPoint]) -> None:
        self.points.extend(points)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[LocalExecutor, LogStore, Collected]]:
    logs = LogStore(tmp_path / "jobs")
    metrics = Collected()
    executor = LocalExecutor(
        jobs_dir=tmp_path / "jobs",
        logs=logs,
        on_metrics=metrics,
        cancel_grace_seconds=2.0,
        sample_interval=0.05,
    )
    yield executor, logs, metrics
    await executor.aclose()


def launch(tmp_path: Path, job_id: str, entrypoint: str, **kw: object) -> JobLaunch:
    return JobLaunch(
        job_id=job_id,
        tenant_id="t1",
        entrypoint=entrypoint,
        data_path=str(kw.pop("data_path", tmp_path / "data.csv")),
        output_path=str(kw.pop("output_path", tmp_path / "out")),
        **kw,  # type: ignore[arg-type]
    )


async def test_sklearn_example_succeeds(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, logs, metrics = env
    data = make_dataset(tmp_path / "data.csv")
    handle = await executor.start(
        launch(
            tmp_path,
            "job_ok",
            "python train.py",
            code_dir=EXAMPLES / "sklearn_classifier",
            data_path=data,
            hyperparameters={"epochs": 3},
            docker_image="img:1",
        )
    )
    assert handle["pid"] > 0
    outcome = await executor.wait("job_ok")
    text = "\n".join(line.render() for line in logs.tail("job_ok", 100))
    assert outcome.status is JobStatus.SUCCEEDED, text
    assert outcome.exit_code == 0
    assert {"cpu_seconds", "peak_rss_mb", "wall_seconds"} <= outcome.resource_usage.keys()
    assert outcome.resource_usage["peak_rss_mb"] > 1
    assert [p.step for p in metrics.points if p.name == "loss"] == [1, 2, 3]
    assert "docker_image 'img:1' is recorded but not used" in text
    assert "epoch 3" in text  # stderr (logging) captured
    model = joblib.load(tmp_path / "out" / "model.joblib")
    assert model.predict([[0.0, 0.0, 0.0, 0.0]]).shape == (1,)


async def test_failure_reports_exit_code_and_stderr_tail(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, logs, _ = env
    script = "import sys; print('out'); print('boom: bad things', file=sys.stderr); sys.exit(3)"
    await executor.start(launch(tmp_path, "job_fail", f'python -c "{script}"'))
    outcome = await executor.wait("job_fail")
    assert outcome.status is JobStatus.FAILED
    assert outcome.exit_code == 3
    assert outcome.error_message is not None
    assert "code 3" in outcome.error_message and "boom: bad things" in outcome.error_message
    streams = [(line.stream, line.text) for line in logs.tail("job_fail", 50)]
    assert ("stdout", "out") in streams and ("stderr", "boom: bad things") in streams


async def test_missing_command_fails_cleanly(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, _, _ = env
    await executor.start(launch(tmp_path, "job_nocmd", "no-such-command-xyz --flag"))
    outcome = await executor.wait("job_nocmd")
    assert outcome.status is JobStatus.FAILED
    assert "could not start" in (outcome.error_message or "")


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


SPAWNER = (
    "import subprocess, sys, time, signal; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); "
    "print('ready', flush=True); time.sleep(600)"
)


async def wait_for_line(logs: LogStore, job_id: str, text: str) -> None:
    while not any(line.text == text for line in logs.tail(job_id, 50)):
        await asyncio.sleep(0.02)


async def test_cancel_leaves_no_process_behind(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, logs, _ = env
    handle = await executor.start(launch(tmp_path, "job_cancel", f'python -c "{SPAWNER}"'))
    await wait_for_line(logs, "job_cancel", "ready")
    while len(group_members(handle["pgid"])) < 2:  # the grandchild is up too
        await asyncio.sleep(0.02)
    await executor.cancel("job_cancel")
    outcome = await executor.wait("job_cancel")
    assert outcome.status is JobStatus.CANCELLED
    assert group_members(handle["pgid"]) == []


async def test_max_runtime_fails_and_kills(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, _, _ = env
    handle = await executor.start(
        launch(tmp_path, "job_slow", f'python -c "{SPAWNER}"', max_runtime_seconds=0.5)
    )
    outcome = await executor.wait("job_slow")
    assert outcome.status is JobStatus.FAILED
    assert "max_runtime_seconds=0.5" in (outcome.error_message or "")
    assert group_members(handle["pgid"]) == []


async def test_recover_stops_a_surviving_process(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, logs, metrics = env
    handle = await executor.start(launch(tmp_path, "job_orphan", f'python -c "{SPAWNER}"'))
    await wait_for_line(logs, "job_orphan", "ready")
    # A fresh executor (as after a server restart) recovers from the persisted handle.
    fresh = LocalExecutor(
        jobs_dir=tmp_path / "jobs", logs=logs, on_metrics=metrics, cancel_grace_seconds=0.5
    )
    outcome = await fresh.recover("job_orphan", handle)
    assert outcome is not None and outcome.status is JobStatus.FAILED
    assert "server restarted" in (outcome.error_message or "")
    assert group_members(handle["pgid"]) == []
    gone = await fresh.recover("job_orphan", handle)
    assert gone is not None and "ended while the server was down" in (gone.error_message or "")


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="needs a system python3")
async def test_job_user_cannot_read_platform_database(tmp_path: Path) -> None:
    # A data dir the job user can traverse (pytest's tmp_path is private to root).
    data_dir = Path(tempfile.mkdtemp(prefix="mlp-user-test-"))
    try:
        data_dir.chmod(0o711)
        database = data_dir / "mlp.db"
        database.write_text("secret")
        database.chmod(0o600)
        tenant = data_dir / "tenants" / "t1"
        tenant.mkdir(parents=True, mode=0o700)
        (tenant / "data.csv").write_text("a,label\n1,0\n")
        logs = LogStore(data_dir / "jobs")
        # The server's interpreter lives under /root here; the job user needs its own.
        executor = LocalExecutor(
            jobs_dir=data_dir / "jobs",
            logs=logs,
            on_metrics=Collected(),
            job_user="nobody",
            python=SYSTEM_PYTHON,
        )
        script = (
            "import os\n"
            "from ml_platform import runtime\n"
            "print('uid', os.getuid())\n"
            "print('data', open(runtime.data_path()).read().splitlines()[0])\n"
            "(runtime.output_dir() / 'ok.txt').write_text('done')\n"
            f"open({str(database)!r}).read()\n"
        )
        code = data_dir / "code"
        code.mkdir()
        (code / "train.py").write_text(script)
        await executor.start(
            JobLaunch(
                job_id="job_user",
                tenant_id="t1",
                entrypoint="python train.py",
                code_dir=code,
                data_path=str(tenant / "data.csv"),
                output_path=str(tenant / "out"),
            )
        )
        outcome = await executor.wait("job_user")
        text = "\n".join(line.text for line in logs.tail("job_user", 50))
        assert outcome.status is JobStatus.FAILED, text
        assert "PermissionError" in (outcome.error_message or ""), text
        assert "uid 65534" in text and "data a,label" in text
    finally:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


async def test_xgboost_example_succeeds(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    executor, logs, metrics = env
    data = make_dataset(tmp_path / "data.csv")
    await executor.start(
        launch(
            tmp_path,
            "job_xgb",
            "python train.py",
            code_dir=EXAMPLES / "xgboost_classifier",
            data_path=data,
            hyperparameters={"num_boost_round": 5},
        )
    )
    outcome = await executor.wait("job_xgb")
    text = "\n".join(line.render() for line in logs.tail("job_xgb", 100))
    assert outcome.status is JobStatus.SUCCEEDED, text
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(tmp_path / "out" / "model.json"))
    assert [p.step for p in metrics.points if p.name == "eval-logloss"] == [1, 2, 3, 4, 5]


async def test_log_limit_and_shutdown_reason(tmp_path: Path) -> None:
    logs = LogStore(tmp_path / "jobs")
    executor = LocalExecutor(
        jobs_dir=tmp_path / "jobs",
        logs=logs,
        on_metrics=Collected(),
        max_log_bytes=2000,
        cancel_grace_seconds=1.0,
    )
    script = "import time\\nfor i in range(1000): print('x' * 50, flush=True)\\ntime.sleep(600)"
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(script.replace("\\n", "\n"))
    await executor.start(launch(tmp_path, "job_big", "python train.py", code_dir=code))
    while not any("log limit" in line.text for line in logs.tail("job_big", 5)):
        await asyncio.sleep(0.02)
    await executor.aclose()
    outcome = await executor.wait("job_big")
    assert outcome.status is JobStatus.FAILED
    assert outcome.error_message == "the server shut down while the job was running"
    assert logs.count("job_big") < 100


async def test_a_log_line_is_never_readable_before_the_metrics_ahead_of_it(
    tmp_path: Path,
) -> None:
    """The sampler's own pass comes once an hour here: only the drain that precedes every
    batch of output can have stored a metric by the time its following line is readable."""
    logs = LogStore(tmp_path / "jobs")
    metrics = Collected()
    executor = LocalExecutor(
        jobs_dir=tmp_path / "jobs", logs=logs, on_metrics=metrics, sample_interval=3600.0
    )
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        "import sys, time\n"
        "from ml_platform import runtime\n"
        "for epoch in range(1, 6):\n"
        "    runtime.log_metrics({'loss': 1.0 / epoch}, step=epoch)\n"
        "    print(f'epoch {epoch}', file=sys.stderr if epoch % 2 else sys.stdout, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    await executor.start(launch(tmp_path, "job_order", "python train.py", code_dir=code))
    seen: set[int] = set()
    deadline = asyncio.get_running_loop().time() + 120
    while len(seen) < 5:
        assert asyncio.get_running_loop().time() < deadline, logs.tail("job_order", 50)
        for line in logs.tail("job_order", 50):
            if line.text.startswith("epoch "):
                epoch = int(line.text.split()[1])
                if epoch not in seen:
                    seen.add(epoch)
                    stored = {point.step for point in metrics.points}
                    assert set(range(1, epoch + 1)) <= stored, (epoch, stored)
        await asyncio.sleep(0.005)
    outcome = await executor.wait("job_order")
    await executor.aclose()
    assert outcome.status is JobStatus.SUCCEEDED
    assert [point.step for point in metrics.points] == [1, 2, 3, 4, 5]
