"""Metric points: what a job's ``log_metrics`` calls become on the platform side.

The runtime writes one JSON record per call (``{"ts", "step", "metrics": {name: value}}``) on a
dedicated channel; :func:`parse_metric_record` turns a record into points and refuses anything
malformed, so nothing a script prints is ever taken for a metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

MAX_METRIC_NAME = 250


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    step: int | None
    timestamp: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "step": self.step,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
        }


class MetricsSink(Protocol):
    """Where executors deliver a job's metric points (the store, live streams)."""

    def __call__(self, job_id: str, points: Sequence[MetricPoint]) -> Awaitable[None]: ...


def parse_metric_record(line: str | bytes) -> list[MetricPoint]:
    """One JSON-lines record -> points. Raises ``ValueError`` when malformed."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise TypeError("metric record must be a JSON object")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metric record has no metrics")
    step = record.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValueError("metric step must be a non-negative integer")
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise ValueError("metric record has no valid timestamp")
    timestamp = datetime.fromtimestamp(float(ts), UTC)
    points = []
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME:
            raise ValueError(f"invalid metric name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metric {name!r} is not a number")
        if not math.isfinite(float(value)):
            raise ValueError(f"metric {name!r} is not finite")
        points.append(MetricPoint(name=name, value=float(value), step=step, timestamp=timestamp))
    return points
