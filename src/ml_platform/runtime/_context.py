"""Implementation of the job runtime contract (see the package docstring)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

ENV_JOB_ID = "ML_PLATFORM_JOB_ID"
ENV_DATA_PATH = "ML_PLATFORM_DATA_PATH"
ENV_OUTPUT_DIR = "ML_PLATFORM_OUTPUT_DIR"
ENV_HYPERPARAMETERS = "ML_PLATFORM_HYPERPARAMETERS"
ENV_METRICS_FILE = "ML_PLATFORM_METRICS_FILE"
ENV_STORAGE_OPTIONS = "ML_PLATFORM_STORAGE_OPTIONS"
"""JSON fsspec options for remote paths (set by executors whose workers reach the platform's
object store directly, e.g. an S3 endpoint); unset: fsspec's defaults (the environment)."""
ENV_METRICS_TAG = "ML_PLATFORM_METRICS_TAG"
"""Fallback channel for clusters without a shared filesystem (Ray): a per-job secret tag.

Lines written to stderr as ``<tag> <json>`` are metrics; the tag is a random secret the
platform generates per job, so an ordinary ``print`` can never be taken for a metric.
"""

_lock = threading.Lock()


def job_id() -> str | None:
    """The running job's id, or ``None`` outside the platform."""
    return os.environ.get(ENV_JOB_ID)


def hyperparameters() -> dict[str, Any]:
    """The spec's ``hyperparameters`` (an empty dict when none were given)."""
    raw = os.environ.get(ENV_HYPERPARAMETERS)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError(f"{ENV_HYPERPARAMETERS} must be a JSON object")
    return value


def output_dir() -> Path:
    """The local directory to write the model into; created if missing.

    Outside the platform this is a fresh temporary directory, so scripts run unchanged locally.
    """
    raw = os.environ.get(ENV_OUTPUT_DIR)
    if raw:
        path = Path(raw)
    else:
        path = Path(tempfile.mkdtemp(prefix="mlp-output-"))
        os.environ[ENV_OUTPUT_DIR] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_path() -> str:
    """The spec's ``data_path``: a local filesystem path for local data, else the URI.

    ``file://`` URIs are turned into local paths; ``s3://`` URIs are returned unchanged (read
    them with :func:`open_data`, which uses fsspec and the ``s3`` extra).
    """
    raw = os.environ.get(ENV_DATA_PATH)
    if not raw:
        raise RuntimeError(f"{ENV_DATA_PATH} is not set: is this running as a platform job?")
    return _localize(raw)


def open_data(mode: str = "rb", path: str | None = None) -> IO[Any]:
    """Open ``path`` (default: :func:`data_path`) for reading, local or remote."""
    target = path if path is not None else data_path()
    if "://" not in target:
        return open(target, mode)
    try:
        import fsspec  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(f"reading {target!r} needs fsspec: install ml-platform[s3]") from exc
    return fsspec.open(target, mode, **storage_options()).open()  # type: ignore[no-any-return]


def storage_options() -> dict[str, Any]:
    """The fsspec options the platform gave this job for remote paths (may be empty)."""
    raw = os.environ.get(ENV_STORAGE_OPTIONS)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError(f"{ENV_STORAGE_OPTIONS} must be a JSON object")
    return value


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Record metric values (e.g. ``{"loss": 0.3}``) at an optional ``step``.

    Values must be finite numbers. Outside the platform this only logs nothing and returns.
    """
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("log_metrics expects a non-empty dict of name -> number")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > 250:
            raise ValueError(f"invalid metric name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {name!r} must be finite, got {number}")
        clean[name] = number
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValueError("step must be a non-negative integer")
    record = {"ts": time.time(), "step": step, "metrics": clean}
    line = json.dumps(record, separators=(",", ":")) + "\n"
    target = os.environ.get(ENV_METRICS_FILE)
    if target:
        data = line.encode()
        with _lock:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)  # one write with O_APPEND: a line is never torn
            finally:
                os.close(fd)
        return
    tag = os.environ.get(ENV_METRICS_TAG)
    if tag:
        import sys

        with _lock:
            sys.stderr.write(f"{tag} {line}")
            sys.stderr.flush()


def _localize(uri: str) -> str:
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        return unquote(parsed.path)
    return uri
