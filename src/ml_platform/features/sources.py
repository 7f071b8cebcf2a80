"""Reading a feature view's source (a CSV or Parquet file of the tenant's data area) and
checking it against the view's definition.

Files are read through ``DataArea.open_file`` only (never a path on disk), so the source
follows the data area wherever its blobs live.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ml_platform.core.errors import FieldViolation, InvalidArgument, PayloadTooLarge
from ml_platform.data.service import DATA_PREFIX, DataArea
from ml_platform.features.types import ValueType

__all__ = ["SourceReader", "SourceSpec", "check_columns", "dtype_matches", "event_times"]

FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class SourceSpec:
    path: str  # ``data/<path>``, as a job's data_path names it
    format: str  # csv | parquet

    @classmethod
    def of(cls, source: dict[str, object]) -> SourceSpec:
        return cls(str(source["path"]), str(source["format"]))

    def to_dict(self) -> dict[str, object]:
        return {"kind": "file", "path": self.path, "format": self.format}


def source_spec(path: str, fmt: str | None, field: str = "body.source") -> SourceSpec:
    """The normalized source: ``data/`` prefix, format from the extension unless given."""
    shown = path if path.startswith(DATA_PREFIX) else DATA_PREFIX + path
    if fmt is None:
        lowered = shown.lower()
        fmt = next((f for f in FORMATS if lowered.endswith("." + f)), None)
        if fmt is None:
            raise InvalidArgument(
                f"{field}.format: cannot tell the format of {shown!r}; give 'csv' or 'parquet'",
                [FieldViolation(f"{field}.format", "give 'csv' or 'parquet'")],
            )
    return SourceSpec(shown, fmt)


class SourceReader:
    """Loads source files into pandas, bounded by ``max_bytes``."""

    def __init__(self, area: DataArea, max_bytes: int) -> None:
        self._area = area
        self._max_bytes = max_bytes

    def read(
        self, tenant_id: str, spec: SourceSpec, field: str = "body.source.path"
    ) -> pd.DataFrame:
        relative = spec.path.removeprefix(DATA_PREFIX)
        reader = self._area.open_file(tenant_id, relative)
        if reader.info.size_bytes > self._max_bytes:
            reader.close()
            raise PayloadTooLarge(
                f"{spec.path} is {reader.info.size_bytes} bytes; feature sources may be at most "
                f"{self._max_bytes} (ML_PLATFORM_FEATURE_MAX_SOURCE_BYTES)"
            )
        buffer = io.BytesIO()
        for chunk in reader.chunks():
            buffer.write(chunk)
        buffer.seek(0)
        try:
            if spec.format == "parquet":
                return pd.read_parquet(buffer)
            return pd.read_csv(buffer)
        except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
            why = f"is not a readable {spec.format} file ({type(exc).__name__})"
            raise InvalidArgument(f"{spec.path} {why}", [FieldViolation(field, why)]) from None


def dtype_matches(series: pd.Series, kind: ValueType) -> bool:
    api = pd.api.types
    if kind is ValueType.BOOL:
        return bool(api.is_bool_dtype(series))
    if kind is ValueType.INT64:
        return bool(api.is_integer_dtype(series)) and not api.is_bool_dtype(series)
    if kind is ValueType.FLOAT64:
        return bool(api.is_float_dtype(series) or api.is_integer_dtype(series)) and not (
            api.is_bool_dtype(series)
        )
    if series.isna().all():
        return True
    return bool(api.is_string_dtype(series) or api.is_object_dtype(series))


def event_times(series: pd.Series) -> pd.Series:
    """The column as UTC timestamps (naive values are taken as UTC); ``ValueError`` if not."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raise ValueError("numbers are not timestamps; write RFC 3339 times")
    return pd.to_datetime(series, utc=True, format="ISO8601")


def check_columns(
    frame: pd.DataFrame,
    path: str,
    join_keys: Sequence[tuple[str, str]],
    features: Sequence[tuple[str, str]],
    timestamp_field: str,
) -> None:
    """``InvalidArgument`` naming every missing or mistyped column of the source."""
    columns = [str(c) for c in frame.columns]
    listed = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
    violations: list[FieldViolation] = []

    def check(field: str, name: str, kind: ValueType | None) -> None:
        if name not in frame.columns:
            violations.append(
                FieldViolation(field, f"column {name!r} is not in {path} (columns: {listed})")
            )
            return
        if kind is not None and not dtype_matches(frame[name], kind):
            violations.append(
                FieldViolation(
                    field,
                    f"column {name!r} of {path} holds {frame[name].dtype} values, not {kind.value}",
                )
            )

    for name, kind in join_keys:
        check("body.entity", name, ValueType(kind))
    for name, kind in features:
        check(f"body.features.{name}", name, ValueType(kind))
    check("body.timestamp_field", timestamp_field, None)
    if timestamp_field in frame.columns:
        try:
            event_times(frame[timestamp_field])
        except (ValueError, TypeError) as exc:
            violations.append(
                FieldViolation(
                    "body.timestamp_field",
                    f"column {timestamp_field!r} of {path} is not timestamps: {str(exc)[:120]}",
                )
            )
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.message}{more}", violations)
