"""The serving plane's Prometheus metrics, in prometheus-client's multi-process mode.

The supervisor gives every serving plane a fresh directory under the data dir and puts it in
``PROMETHEUS_MULTIPROC_DIR`` before it spawns workers, so each worker's prometheus-client
writes its samples there; ``GET /metrics`` on the V2 REST port (whichever worker answers)
reads every worker's files, the replaced ones included, and sums them. Without that variable
(one in-process node in tests) the samples stay in this process.

- ``mlp_serving_predictions_total{tenant,deployment,status}``: inference calls through
  ``DataPlane.infer`` (every adapter), ``status`` ``OK`` or the error code. A call whose
  deployment did not resolve is counted as ``deployment="unresolved"``: a caller-supplied
  name never becomes a label.
- ``mlp_serving_rejections_total{code}``: calls refused at authentication (bad credentials,
  ``RESOURCE_EXHAUSTED`` over the data-plane rate limit); no tenant is known for them.
- ``mlp_serving_batch_rows{tenant,deployment}``: rows per model call (after batching).
- ``mlp_serving_model_load_seconds{tenant,deployment,format,outcome}``: load + warm-up time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import generate_latest

from ml_platform.serving.models import ServedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNRESOLVED = "unresolved"
OK = "OK"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# the metrics live in this registry only in single-process mode; in multi-process mode the
# values go to files and a MultiProcessCollector reads them at scrape time
REGISTRY = CollectorRegistry()

PREDICTIONS = Counter(
    "mlp_serving_predictions",
    "Inference calls by deployment and outcome (OK or the error code)",
    ["tenant", "deployment", "status"],
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "mlp_serving_rejections",
    "Calls refused before any model was chosen: UNAUTHENTICATED, or RESOURCE_EXHAUSTED when "
    "over the data-plane rate limit",
    ["code"],
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "mlp_serving_batch_rows",
    "Rows per model call, after dynamic batching",
    ["tenant", "deployment"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Histogram(
    "mlp_serving_model_load_seconds",
    "Time to load and warm up a model version, by outcome (ready or failed)",
    ["tenant", "deployment", "format", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)


# Labelled children, built once per label set: ``labels(...)`` takes a lock and builds
# the child's key on every call (7.6% of a worker's samples at C=32 in a py-spy profile).
# The keys are bounded: resolved deployment names (never a caller's), error codes.
_prediction_children: dict[tuple[str, str, str], Callable[[float], None]] = {}
_rejection_children: dict[str, Callable[[float], None]] = {}


# Within a running event loop the counts of one loop turn are added up and written once, by
# a callback on the next turn: in multi-process mode every ``inc`` is a locked write into the
# mmapped file (2.8% of a worker's samples at C=32), and the callers a batch answers all
# resume in the same turn. Pending counts are per thread (each loop flushes its own);
# ``render`` writes this thread's first.
class _Pending(threading.local):
    def __init__(self) -> None:
        self.counts: dict[Callable[[float], None], int] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on


_pending = _Pending()


def _flush() -> None:
    pending = _pending
    pending.loop = None
    counts = pending.counts
    while counts:
        inc, n = counts.popitem()
        inc(n)


def _count(inc: Callable[[float], None]) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: write now
        inc(1)
        return
    pending = _pending
    counts = pending.counts
    counts[inc] = counts.get(inc, 0) + 1
    if pending.loop is not loop:  # a loop that stopped before its flush left counts too
        pending.loop = loop
        loop.call_soon(_flush)


def count_prediction(tenant_id: str, deployment: str | None, status: str) -> None:
    key = (tenant_id, deployment or UNRESOLVED, status)
    inc = _prediction_children.get(key)
    if inc is None:
        inc = _prediction_children[key] = PREDICTIONS.labels(*key).inc
    _count(inc)


def count_rejection(code: str) -> None:
    inc = _rejection_children.get(code)
    if inc is None:
        inc = _rejection_children[code] = REJECTIONS.labels(code).inc
    _count(inc)


def batch_observer(model: ServedModel) -> Callable[[int], None]:
    """What a model's batcher calls with the rows of each model call."""
    return BATCH_ROWS.labels(model.tenant_id, model.deployment).observe


def observe_model_load(model: ServedModel, seconds: float, ready: bool) -> None:
    MODEL_LOAD_SECONDS.labels(
        model.tenant_id,
        model.deployment,
        model.artifact_format.value,
        "ready" if ready else "failed",
    ).observe(seconds)


def render() -> bytes:
    """The exposition text: every worker's samples in multi-process mode, else this one's."""
    _flush()
    path = os.environ.get(MULTIPROC_ENV)
    if path and Path(path).is_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class MultiprocDir:
    """A fresh private directory for one serving plane's workers, exported through
    ``PROMETHEUS_MULTIPROC_DIR`` while it runs (set before any worker is spawned) and
    removed, with the previous value restored, when it closes."""

    def __init__(self, data_dir: Path) -> None:
        root = Path(data_dir) / "serving-metrics"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir(mode=0o700)
        self._previous = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = str(self.path)

    def process_exited(self, pid: int) -> None:
        """A worker is gone: its live gauges are dropped (its counters keep counting)."""
        if pid:
            multiprocess.mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if os.environ.get(MULTIPROC_ENV) == str(self.path):
            if self._previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = self._previous
        shutil.rmtree(self.path, ignore_errors=True)
