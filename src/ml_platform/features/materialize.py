"""From source rows to online rows: the latest value per entity key, after a watermark."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from ml_platform.core.errors import InvalidArgument
from ml_platform.features.sources import event_times
from ml_platform.features.types import ValueType, entity_key
from ml_platform.store.features import OnlineRowRecord

__all__ = ["LatestValues", "latest_values", "plain"]

TS_COLUMN = "__mlp_event_ts"


@dataclass(frozen=True)
class LatestValues:
    rows_read: int  # rows newer than the watermark
    rows: list[OnlineRowRecord]  # one per entity key: its newest row
    newest: datetime | None  # the newest event time among them (the next watermark)
    skipped: int  # rows without a join key value


def plain(value: Any) -> Any:
    """A pandas/numpy scalar as a JSON value (NaN and NaT as None)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def _typed(value: Any, kind: ValueType) -> Any:
    value = plain(value)
    if value is None:
        return None
    if kind is ValueType.FLOAT64:
        return float(value)
    if kind is ValueType.INT64:
        return int(value)
    if kind is ValueType.BOOL:
        return bool(value)
    return str(value)


def latest_values(
    frame: pd.DataFrame,
    *,
    join_keys: Sequence[tuple[str, str]],
    features: Sequence[tuple[str, str]],
    timestamp_field: str,
    after: datetime | None,
) -> LatestValues:
    """The newest row of each entity key among rows with an event time after ``after``.
    Ties (one key, one time) go to the row that comes last in the file."""
    try:
        times = event_times(frame[timestamp_field])
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"column {timestamp_field!r} is not timestamps: {str(exc)[:160]}"
        ) from None
    keys = [k for k, _ in join_keys]
    work = frame[keys + [f for f, _ in features]].assign(**{TS_COLUMN: times})
    work = work[work[TS_COLUMN].notna()]
    if after is not None:
        work = work[work[TS_COLUMN] > pd.Timestamp(after)]
    rows_read = len(work)
    complete = work.dropna(subset=keys)
    skipped = rows_read - len(complete)
    if complete.empty:
        return LatestValues(rows_read, [], None, skipped)
    latest = complete.sort_values(TS_COLUMN, kind="stable").drop_duplicates(keys, keep="last")
    key_columns = {k: latest[k].tolist() for k in keys}
    value_columns = {f: latest[f].tolist() for f, _ in features}
    kinds = {f: ValueType(t) for f, t in features}
    stamps = latest[TS_COLUMN].tolist()
    out: list[OnlineRowRecord] = []
    for i, ts in enumerate(stamps):
        key_row = {k: plain(col[i]) for k, col in key_columns.items()}
        key = entity_key(key_row, join_keys, f"row {i}")
        values = {f: _typed(col[i], kinds[f]) for f, col in value_columns.items()}
        out.append(OnlineRowRecord(key, values, ts.to_pydatetime()))
    newest = max(stamps).to_pydatetime()
    return LatestValues(rows_read, out, newest, skipped)
