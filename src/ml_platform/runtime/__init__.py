"""What a training script imports: the job runtime contract.

The platform starts every job with these environment variables set:

- ``ML_PLATFORM_JOB_ID``: the job's id.
- ``ML_PLATFORM_DATA_PATH``: the spec's ``data_path`` (a local path, ``file://`` or ``s3://`` URI).
- ``ML_PLATFORM_OUTPUT_DIR``: a local directory; everything written there is copied to the
  spec's ``output_path`` when the script exits 0.
- ``ML_PLATFORM_HYPERPARAMETERS``: the spec's ``hyperparameters`` as JSON.
- ``ML_PLATFORM_METRICS_FILE``: where :func:`log_metrics` appends its JSON lines (a dedicated
  channel: nothing the script prints is ever parsed as a metric).
- every key of the spec's ``env_vars``.

This module is pure standard library (``fsspec`` is imported lazily for ``s3://`` paths only)
so it runs in any interpreter the job uses, with no server dependency.
"""

from __future__ import annotations

from ml_platform.runtime._context import (
    data_path,
    hyperparameters,
    job_id,
    log_metrics,
    open_data,
    output_dir,
)
from ml_platform.runtime._features import get_historical_features

__all__ = [
    "data_path",
    "get_historical_features",
    "hyperparameters",
    "job_id",
    "log_metrics",
    "open_data",
    "output_dir",
]
