"""The Ray executor's log batches: a job's log line is never readable before the metrics the
job recorded ahead of it.

Ray's log tail hands over whatever arrived since its last read, so one batch often holds a
metrics record and the log lines that follow it (``epoch 2: loss=...``). A follower who sees
such a line and then asks for the metrics must find them. Generated streams of metric records
and output lines, cut into generated batches, go through the executor's own batch consumer
with a real ``LogStore``; the metrics sink notes which lines were readable when it was called.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml_platform.jobs.logs import LogStore
from ml_platform.jobs.metrics import MetricPoint

ray_executor = pytest.importorskip("ml_platform.jobs.executors.ray")

TAG = "mlp-metric-batches"
JOB = "job_batches"

# a stream: True = a metrics record, False = an output line
streams = st.lists(st.booleans(), min_size=1, max_size=30)


def _lines(stream: list[bool]) -> list[str]:
    """Position ``i`` of the stream is a metrics record with step ``i`` or the line ``out i``."""
    return [
        f"{TAG} " + json.dumps({"ts": 1.0, "step": i, "metrics": {"loss": 0.5}})
        if is_metric
        else f"out {i}"
        for i, is_metric in enumerate(stream)
    ]


@settings(max_examples=60, deadline=None)
@given(stream=streams, cut_at=st.sets(st.integers(1, 29)))
# the instance CI met: one batch with a record, its epoch line, the next record and line
@example(stream=[True, False, True, False], cut_at=set())
def test_no_line_is_readable_before_the_metrics_ahead_of_it(
    tmp_path_factory: pytest.TempPathFactory, stream: list[bool], cut_at: set[int]
) -> None:
    root = tmp_path_factory.mktemp("logs")
    logs = LogStore(root)
    lines = _lines(stream)
    cuts = sorted(cut for cut in cut_at if cut < len(lines))
    batches = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    stored_steps: list[int] = []
    readable_when_stored: list[set[int]] = []

    async def sink(job_id: str, points: list[MetricPoint]) -> None:
        assert job_id == JOB
        readable = {int(line.text.split()[1]) for line in logs.read_after(JOB)}
        for point in points:
            assert point.step is not None
            stored_steps.append(point.step)
            readable_when_stored.append(readable)

    executor = ray_executor.RayExecutor(
        address="http://127.0.0.1:1", jobs_dir=root, logs=logs, on_metrics=sink
    )
    run = ray_executor._RayRun(
        job_id=JOB,
        submission_id=JOB,
        output_dir=root / "out",
        output_path=str(root / "out"),
        tag=TAG,
        max_runtime_seconds=None,
    )

    async def consume_all() -> None:
        for batch in batches:
            await executor._consume(run, batch)

    asyncio.run(consume_all())

    expected_steps = [i for i, is_metric in enumerate(stream) if is_metric]
    assert stored_steps == expected_steps
    assert [line.text for line in logs.read_after(JOB)] == [
        line for line in lines if not line.startswith(TAG)
    ]
    for step, readable in zip(stored_steps, readable_when_stored, strict=True):
        # every line readable when this record was stored comes before it in the job's stream
        assert all(position < step for position in readable), (step, readable, batches)
