"""Point-in-time joins: each entity row gets, per feature view, the newest source row of its
entity key at or before the row's timestamp, and none older than the view's TTL. A value
from after the row's time never leaks in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ml_platform.core.errors import FieldViolation, InvalidArgument
from ml_platform.features.sources import event_times
from ml_platform.features.types import ValueType

__all__ = ["ViewJoin", "point_in_time_join"]

_ROW = "__mlp_row"
_TS = "__mlp_ts"
_PANDAS_KEY_TYPES = {
    ValueType.INT64: "int64",
    ValueType.FLOAT64: "float64",
    ValueType.STRING: "object",
    ValueType.BOOL: "bool",
}


@dataclass(frozen=True)
class ViewJoin:
    """One feature view's part of a join: its source frame and what to take from it."""

    view: str
    frame: pd.DataFrame
    join_keys: Sequence[tuple[str, str]]
    timestamp_field: str
    ttl_seconds: int
    features: Sequence[str]  # source columns to take
    columns: Sequence[str]  # their output names, in the same order


def _key_column(series: pd.Series, kind: ValueType, where: str) -> pd.Series:
    try:
        if kind is ValueType.STRING:
            return series.astype(object)
        return series.astype(_PANDAS_KEY_TYPES[kind])
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"{where}: join key {series.name!r} values are not all {kind.value}",
            [FieldViolation(where, f"join key {series.name!r} must be {kind.value}")],
        ) from None


def point_in_time_join(
    entity_df: pd.DataFrame, timestamp_field: str, joins: Sequence[ViewJoin]
) -> pd.DataFrame:
    """``entity_df`` (same rows, same order) plus one column per requested feature."""
    if timestamp_field not in entity_df.columns:
        raise InvalidArgument(
            f"entity_rows: every row needs its as-of time in {timestamp_field!r}",
            [FieldViolation("entity_rows", f"column {timestamp_field!r} is missing")],
        )
    try:
        as_of = event_times(entity_df[timestamp_field])
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"entity_rows.{timestamp_field}: not RFC 3339 timestamps ({str(exc)[:120]})",
            [FieldViolation(f"entity_rows.{timestamp_field}", "must be RFC 3339 timestamps")],
        ) from None
    if as_of.isna().any():
        raise InvalidArgument(
            f"entity_rows.{timestamp_field}: every row needs a timestamp",
            [FieldViolation(f"entity_rows.{timestamp_field}", "must not be null")],
        )
    result = entity_df.copy()
    left_base = pd.DataFrame(
        {_ROW: range(len(entity_df)), _TS: as_of.reset_index(drop=True).dt.as_unit("ns")}
    )
    for join in joins:
        keys = [k for k, _ in join.join_keys]
        missing = [k for k in keys if k not in entity_df.columns]
        if missing:
            raise InvalidArgument(
                f"entity_rows: feature view {join.view!r} joins on {keys}; "
                f"{missing[0]!r} is missing",
                [FieldViolation("entity_rows", f"join key {missing[0]!r} is missing")],
            )
        left = left_base.copy()
        for name, kind in join.join_keys:
            left[name] = _key_column(entity_df[name], ValueType(kind), "entity_rows").to_numpy()
        right = join.frame[[*keys, *join.features]].copy()
        right[_TS] = event_times(join.frame[join.timestamp_field]).dt.as_unit("ns")
        right = right.dropna(subset=[_TS, *keys])
        for name, kind in join.join_keys:
            right[name] = _key_column(right[name], ValueType(kind), join.view)
        right = right.rename(columns=dict(zip(join.features, join.columns, strict=True)))
        right = right.sort_values(_TS, kind="stable")
        left = left.sort_values(_TS, kind="stable")
        merged = pd.merge_asof(
            left,
            right,
            on=_TS,
            by=keys,
            direction="backward",
            allow_exact_matches=True,
            tolerance=pd.Timedelta(seconds=join.ttl_seconds) if join.ttl_seconds else None,
        ).sort_values(_ROW)
        for column in join.columns:
            result[column] = merged[column].to_numpy()
    return result
