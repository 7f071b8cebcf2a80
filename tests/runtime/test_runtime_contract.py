from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml_platform import runtime
from ml_platform.jobs.metrics import parse_metric_record

SRC = str(Path(runtime.__file__).resolve().parents[2])


def test_contract_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    monkeypatch.setenv("ML_PLATFORM_JOB_ID", "job_1")
    monkeypatch.setenv("ML_PLATFORM_DATA_PATH", f"file://{tmp_path}/data%20set.csv")
    monkeypatch.setenv("ML_PLATFORM_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("ML_PLATFORM_HYPERPARAMETERS", '{"lr": 0.1, "epochs": 3}')
    monkeypatch.setenv("ML_PLATFORM_METRICS_FILE", str(metrics))
    assert runtime.job_id() == "job_1"
    assert runtime.data_path() == f"{tmp_path}/data set.csv"
    assert runtime.output_dir() == tmp_path / "out" and (tmp_path / "out").is_dir()
    assert runtime.hyperparameters() == {"lr": 0.1, "epochs": 3}
    runtime.log_metrics({"loss": 0.5, "acc": 1}, step=2)
    runtime.log_metrics({"loss": 0.25})
    lines = metrics.read_text().splitlines()
    points = [p for line in lines for p in parse_metric_record(line)]
    assert [(p.name, p.value, p.step) for p in points] == [
        ("loss", 0.5, 2),
        ("acc", 1.0, 2),
        ("loss", 0.25, None),
    ]


@pytest.mark.parametrize(
    ("metrics", "step"),
    [
        ({}, None),
        ({"x": float("nan")}, None),
        ({"x": "1"}, None),
        ({"x": True}, None),
        ({"x": 1.0}, -1),
        ({"": 1.0}, None),
    ],
)
def test_log_metrics_rejects_bad_values(metrics: dict, step: int | None) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, TypeError)):
        runtime.log_metrics(metrics, step=step)


def test_runtime_imports_nothing_server_side() -> None:
    code = (
        "import sys, ml_platform.runtime as r; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi','sqlalchemy','psutil','starlette','grpc','ray','uvicorn'}]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_printed_lines_are_never_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    script = (
        "import json; from ml_platform import runtime; "
        "print(json.dumps({'ts': 1.0, 'step': 1, 'metrics': {'loss': 9}})); "
        "runtime.log_metrics({'loss': 1.0}, step=1)"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": SRC, "ML_PLATFORM_METRICS_FILE": str(metrics)},
        check=True,
        capture_output=True,
    )
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["metrics"] for r in records] == [{"loss": 1.0}]


def test_public_surface_is_sorted_and_complete() -> None:
    assert runtime.__all__ == sorted(runtime.__all__)
    assert all(callable(getattr(runtime, name)) for name in runtime.__all__)
